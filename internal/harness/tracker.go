package harness

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// Tracker watches the worker Secrets and batch Jobs the operator writes, as a worker's
// kubelet would see them, and records per ImportJob: when the first credential and the
// Job appeared (time to first credential), every token revision, and deadline misses.
//
// A deadline miss is a revision still in the worker Secret at its expires_at minus the
// propagation budget: the new token reached the Secret too late for the kubelet to
// project it before the old one expired. It is counted once per revision, at the moment
// the deadline passes (or when a late replacement arrives).
type Tracker struct {
	budget   time.Duration
	nsPrefix string

	mu      sync.Mutex
	jobs    map[string]*tracked
	misses  []Miss
	changes []time.Time // every revision change after the first token
	slacks  []time.Duration
	keys    []string // the ImportJob of each change
	expired []Miss   // revisions still served after expires_at itself
}

type tracked struct {
	created  time.Time
	ready    time.Time
	jobSeen  time.Time
	rev      string
	exp      time.Time
	since    time.Time
	missed   bool
	miss     int // index in Tracker.misses of this revision's miss, while missed
	expiredF bool
	revs     int
}

// Miss is one deadline miss.
type Miss struct {
	Key      string
	Deadline time.Time
	// Late is how long after the deadline the replacement arrived (until the end of the
	// run when it never did).
	Late time.Duration
}

// NewTracker starts watching the worker Secrets and Jobs in the namespaces whose names
// start with nsPrefix. budget is the ImportJobs' propagation budget.
func NewTracker(ctx context.Context, cs kubernetes.Interface, budget time.Duration, nsPrefix string) (*Tracker, error) {
	t := &Tracker{budget: budget, nsPrefix: nsPrefix, jobs: map[string]*tracked{}}
	// Only the worker Secrets and Jobs, as a kubelet and the job controller see them:
	// the stored chains change twice per rotation and are none of the tracker's business.
	sel := jobtokenv1alpha1.LabelManagedBy + "=" + jobtokenv1alpha1.ManagedByValue + "," +
		jobtokenv1alpha1.LabelRole + " in (" + jobtokenv1alpha1.RoleWorker + "," + jobtokenv1alpha1.RoleWorkerToken + ")"
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = sel
	}))
	secrets := f.Core().V1().Secrets().Informer()
	jobs := f.Batch().V1().Jobs().Informer()
	if _, err := secrets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.onSecret(o) },
		UpdateFunc: func(_, o any) { t.onSecret(o) },
	}); err != nil {
		return nil, err
	}
	if _, err := jobs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { t.onJob(o) },
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, ctx.Err()
		}
		_ = typ
	}
	go t.scan(ctx)
	return t, nil
}

func jobKey(ns, name string) string { return ns + "/" + name }

func (t *Tracker) get(key string) *tracked {
	j := t.jobs[key]
	if j == nil {
		j = &tracked{}
		t.jobs[key] = j
	}
	return j
}

// Created records when the driver created an ImportJob (before the request was sent).
func (t *Tracker) Created(ns, name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(jobKey(ns, name)).created = at
}

func (t *Tracker) onJob(o any) {
	j, ok := o.(*batchv1.Job)
	if !ok || j.Labels[jobtokenv1alpha1.LabelRole] != jobtokenv1alpha1.RoleWorker || !strings.HasPrefix(j.Namespace, t.nsPrefix) {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.get(jobKey(j.Namespace, j.Labels[jobtokenv1alpha1.LabelImportJobName]))
	if tr.jobSeen.IsZero() {
		tr.jobSeen = now
		t.checkReady(tr, now)
	}
}

func (t *Tracker) onSecret(o any) {
	s, ok := o.(*corev1.Secret)
	if !ok || s.Labels[jobtokenv1alpha1.LabelRole] != jobtokenv1alpha1.RoleWorkerToken || !strings.HasPrefix(s.Namespace, t.nsPrefix) {
		return
	}
	if len(s.Data[jobtokenv1alpha1.KeyAccessToken]) == 0 {
		return
	}
	exp, err := time.Parse(time.RFC3339, string(s.Data[jobtokenv1alpha1.KeyExpiresAt]))
	if err != nil {
		return
	}
	rev := s.Annotations[jobtokenv1alpha1.AnnotationTokenRevision]
	now := time.Now()
	key := jobKey(s.Namespace, s.Labels[jobtokenv1alpha1.LabelImportJobName])
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.get(key)
	if tr.rev == rev && tr.exp.Equal(exp) {
		return
	}
	if tr.revs > 0 {
		deadline := tr.exp.Add(-t.budget)
		t.slacks = append(t.slacks, deadline.Sub(now))
		t.changes = append(t.changes, now)
		t.keys = append(t.keys, key)
		if now.After(deadline) {
			if !tr.missed {
				t.misses = append(t.misses, Miss{Key: key, Deadline: deadline, Late: now.Sub(deadline)})
			} else {
				t.misses[tr.miss].Late = now.Sub(deadline)
			}
		}
	}
	tr.rev, tr.exp, tr.since, tr.missed, tr.expiredF = rev, exp, now, false, false
	tr.revs++
	t.checkReady(tr, now)
}

func (t *Tracker) checkReady(tr *tracked, now time.Time) {
	if tr.ready.IsZero() && tr.revs > 0 && !tr.jobSeen.IsZero() {
		tr.ready = now
	}
}

// scan flags revisions whose deadline passed while they were still current.
func (t *Tracker) scan(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			for key, tr := range t.jobs {
				if tr.revs == 0 {
					continue
				}
				if deadline := tr.exp.Add(-t.budget); !tr.missed && now.After(deadline) {
					tr.missed, tr.miss = true, len(t.misses)
					t.misses = append(t.misses, Miss{Key: key, Deadline: deadline, Late: now.Sub(deadline)})
				} else if tr.missed {
					// An index, not a search of the misses: with thousands of jobs late,
					// a search per job and tick took more CPU than the operator.
					t.misses[tr.miss].Late = now.Sub(deadline)
				}
				if !tr.expiredF && now.After(tr.exp) {
					tr.expiredF = true
					t.expired = append(t.expired, Miss{Key: key, Deadline: tr.exp})
				}
			}
			t.mu.Unlock()
		}
	}
}

// Forget stops tracking deadlines of an ImportJob (it ended).
func (t *Tracker) Forget(ns, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.jobs, jobKey(ns, name))
}

// Ready returns the time to first credential of an ImportJob (zero while not ready).
func (t *Tracker) Ready(ns, name string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.jobs[jobKey(ns, name)]
	if tr == nil || tr.ready.IsZero() || tr.created.IsZero() {
		return 0, false
	}
	return tr.ready.Sub(tr.created), true
}

// ReadyCount counts tracked ImportJobs holding a credential with their Job created.
func (t *Tracker) ReadyCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, tr := range t.jobs {
		if !tr.ready.IsZero() {
			n++
		}
	}
	return n
}

// RotatedSince counts ImportJobs whose token revision changed after at, and the time of
// the latest such change.
func (t *Tracker) RotatedSince(at time.Time) (int, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, last := 0, time.Time{}
	for _, tr := range t.jobs {
		if tr.revs > 1 && tr.since.After(at) {
			n++
			if tr.since.After(last) {
				last = tr.since
			}
		}
	}
	return n, last
}

// ValidCount counts ImportJobs whose current token is not expired at now (on the
// Secret's expires_at).
func (t *Tracker) ValidCount(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, tr := range t.jobs {
		if tr.revs > 0 && now.Before(tr.exp) {
			n++
		}
	}
	return n
}

// Window is what the tracker saw between two times.
type Window struct {
	Rotations int
	Misses    []Miss
	// Expired counts revisions still served after their expires_at.
	Expired int
	// MinSlack is the smallest margin between a replacement and the deadline of the
	// token it replaced (negative: late); P1Slack the 1st percentile.
	MinSlack, P1Slack time.Duration
}

// Between summarises rotations and deadline misses whose times fall in [from, to).
func (t *Tracker) Between(from, to time.Time) Window {
	t.mu.Lock()
	defer t.mu.Unlock()
	var w Window
	var slacks []time.Duration
	for i, at := range t.changes {
		if !at.Before(from) && at.Before(to) {
			w.Rotations++
			slacks = append(slacks, t.slacks[i])
		}
	}
	for _, m := range t.misses {
		if !m.Deadline.Before(from) && m.Deadline.Before(to) {
			w.Misses = append(w.Misses, m)
		}
	}
	for _, m := range t.expired {
		if !m.Deadline.Before(from) && m.Deadline.Before(to) {
			w.Expired++
		}
	}
	if len(slacks) > 0 {
		sort.Slice(slacks, func(i, j int) bool { return slacks[i] < slacks[j] })
		w.MinSlack = slacks[0]
		w.P1Slack = slacks[len(slacks)/100]
	}
	return w
}

// Rotation is one token replacement the tracker saw.
type Rotation struct {
	Key string
	At  time.Time
	// Slack is the replaced token's deadline minus At (negative: late).
	Slack time.Duration
}

// Rotations lists the replacements seen in [from, to), in the order they were seen.
func (t *Tracker) Rotations(from, to time.Time) []Rotation {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Rotation
	for i, at := range t.changes {
		if !at.Before(from) && at.Before(to) {
			out = append(out, Rotation{Key: t.keys[i], At: at, Slack: t.slacks[i]})
		}
	}
	return out
}

// PeakPerSecond is the largest number of rotations seen within any one second.
func PeakPerSecond(rs []Rotation) int {
	peak := 0
	for i := range rs {
		n := 0
		for j := i; j < len(rs) && rs[j].At.Sub(rs[i].At) < time.Second; j++ {
			n++
		}
		peak = max(peak, n)
	}
	return peak
}

// Since is when the current token revision of an ImportJob appeared.
func (t *Tracker) Since(ns, name string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.jobs[jobKey(ns, name)]; tr != nil {
		return tr.since
	}
	return time.Time{}
}

// ImportJobRef is an ImportJob object with only its key set, for Get and Patch.
func ImportJobRef(k client.ObjectKey) *jobtokenv1alpha1.ImportJob {
	return &jobtokenv1alpha1.ImportJob{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
}
