package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/harness"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// The memory-return phase: does the manager give back what jobs and issuers cost once
// they are gone? A manager of its own (the main one stopped, so that nobody else serves
// the phase's objects; limited by --watch-namespaces to the phase's namespaces, so that it
// does not hold the main phases' jobs) creates and deletes ChurnJobs ImportJobs on
// ChurnIssuers TokenIssuers; its live heap after GC at the end is compared with the one at
// its start.

// TargetMemoryReturn is the phase's target.
const TargetMemoryReturn = "manager memory returns within 10% of its start after jobs and issuers are deleted"

// churnReturnRatio is the target: end heap ÷ start heap.
const churnReturnRatio = 1.10

// churnSettle bounds how long the phase waits, once everything is deleted, for the heap
// to come back. The informers drop deleted objects at once, but client-go's event
// recorder keeps each event it sent for its series detection until a sweep every 6
// minutes finds it older than 6 minutes (up to 12 minutes), and idle connections to
// deleted issuers close after 90 s; memory still held past that is what the phase is for.
const churnSettle = 13 * time.Minute

// Churn is what the memory-return phase measured.
type Churn struct {
	Jobs, Issuers int
	// StartHeap is the live heap after GC of the idle manager; PeakHeap with every job
	// holding a credential; EndHeap once jobs and issuers are gone (after Settled).
	StartHeap, PeakHeap, EndHeap uint64
	StartRSS, EndRSS             uint64
	// Settled is how long after the last deletion EndHeap was read.
	Settled time.Duration
	// Elapsed is the whole phase.
	Elapsed time.Duration
}

// Ratio is EndHeap ÷ StartHeap (0 when not measured).
func (c Churn) Ratio() float64 {
	if c.StartHeap == 0 || c.EndHeap == 0 {
		return 0
	}
	return float64(c.EndHeap) / float64(c.StartHeap)
}

func (c Churn) target() Target {
	if c.Ratio() == 0 {
		return Target{ID: TargetMemoryReturn, Why: "the phase did not run to its end"}
	}
	return Target{ID: TargetMemoryReturn, Measured: true, Met: c.Ratio() <= churnReturnRatio,
		Why: fmt.Sprintf("%.3f (heap %s → %s)", c.Ratio(), mib(c.StartHeap), mib(c.EndHeap))}
}

func (c Churn) markdownRow(verdict string) string {
	if c.Ratio() == 0 {
		return fmt.Sprintf("| Manager memory after creating and deleting %d ImportJobs and %d issuers | not measured | ≤ 1.10 of its start | %s |", c.Jobs, c.Issuers, verdict)
	}
	return fmt.Sprintf("| Manager memory after creating and deleting %d ImportJobs on %d TokenIssuers (live heap after GC, end ÷ start; a manager of its own, %s after the last deletion) | %.3f (heap %s → %s with every job running → %s; RSS %s → %s) | ≤ 1.10 | %s |",
		c.Jobs, c.Issuers, ms(c.Settled), c.Ratio(), mib(c.StartHeap), mib(c.PeakHeap), mib(c.EndHeap), mib(c.StartRSS), mib(c.EndRSS), verdict)
}

// runChurn runs the phase on the cluster with the issuer at issuerURL.
func runChurn(ctx context.Context, cl *harness.Cluster, issuerURL string, o Options, say func(string, ...any)) (Churn, error) {
	if o.ChurnJobs <= 0 {
		o.ChurnJobs = 1000
	}
	if o.ChurnIssuers <= 0 {
		o.ChurnIssuers = 100
	}
	res := Churn{Jobs: o.ChurnJobs, Issuers: o.ChurnIssuers}
	start := time.Now()
	c := cl.Client
	const prefix = "churn"
	vault := prefix + "-vault"
	nsCount := min(o.Namespaces, o.ChurnIssuers)
	var namespaces []string
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: vault}}}
	for i := range nsCount {
		ns := fmt.Sprintf("%s-%d", prefix, i)
		namespaces = append(namespaces, ns)
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			testenv.ClientSecret(ns, "issuer-client", harness.ClientSecret),
			testenv.UserSecret(ns, "user", harness.UserName, harness.UserPassword))
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return res, fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	// issuer i lives in namespace i % nsCount; job j uses issuer j % ChurnIssuers.
	issuerKey := func(i int) client.ObjectKey {
		return client.ObjectKey{Namespace: namespaces[i%nsCount], Name: fmt.Sprintf("issuer-%03d", i)}
	}

	statsFile := filepath.Join(o.WorkDir, "churn-manager.addr")
	_ = os.Remove(statsFile)
	args := []string{"manager", "--kubeconfig", cl.Kubeconfig, "--vault-namespace", vault, "--stats-file", statsFile,
		"--watch-namespaces", strings.Join(namespaces, ",")}
	mgr, err := testenv.StartProc("churn-manager", o.Bin, args, filepath.Join(o.WorkDir, "churn-manager.log"))
	if err != nil {
		return res, err
	}
	defer stopManager(mgr, say)
	mc, err := harness.WaitManagerStats(ctx, statsFile, mgr, time.Minute)
	if err != nil {
		return res, err
	}
	time.Sleep(3 * time.Second)
	s, err := mc.Stats(true)
	if err != nil {
		return res, err
	}
	res.StartHeap, res.StartRSS = s.HeapAlloc, s.RSS
	say("memory return: a manager of its own (pid %d) on %d namespaces: heap %s, RSS %s; creating %d TokenIssuers and %d ImportJobs",
		mgr.PID(), nsCount, mib(s.HeapAlloc), mib(s.RSS), o.ChurnIssuers, o.ChurnJobs)

	if err := harness.ForEach(ctx, o.ChurnIssuers, o.CreateConcurrency, func(i int) error {
		k := issuerKey(i)
		return c.Create(ctx, &jobtokenv1alpha1.TokenIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name},
			Spec:       testenv.DevIssuerSpec(issuerURL, harness.ClientID, "issuer-client"),
		})
	}); err != nil {
		return res, err
	}
	if err := harness.ForEach(ctx, o.ChurnJobs, o.CreateConcurrency, func(j int) error {
		k := issuerKey(j % o.ChurnIssuers)
		return c.Create(ctx, testenv.ImportJob(k.Namespace, fmt.Sprintf("churn-%05d", j), testenv.OnTokenIssuer(k.Name), "user"))
	}); err != nil {
		return res, err
	}
	running := func() (int, error) {
		n := 0
		for _, ns := range namespaces {
			list := &jobtokenv1alpha1.ImportJobList{}
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				return 0, err
			}
			for _, j := range list.Items {
				if j.Status.Phase == jobtokenv1alpha1.PhaseRunning && j.Status.TokenExpiresAt != nil {
					n++
				}
			}
		}
		return n, nil
	}
	var n int
	if err := testenv.Poll(ctx, max(5*time.Minute, time.Duration(o.ChurnJobs)*200*time.Millisecond), time.Second, func() bool {
		n, err = running()
		return err == nil && n >= o.ChurnJobs
	}); err != nil {
		return res, fmt.Errorf("memory return: only %d of %d ImportJobs got a credential: %w", n, o.ChurnJobs, err)
	}
	if s, err = mc.Stats(true); err != nil {
		return res, err
	}
	res.PeakHeap = s.HeapAlloc
	say("  all %d running: heap %s; deleting the ImportJobs, then the TokenIssuers", o.ChurnJobs, mib(s.HeapAlloc))

	for _, ns := range namespaces {
		if err := c.DeleteAllOf(ctx, &jobtokenv1alpha1.ImportJob{}, client.InNamespace(ns)); err != nil {
			return res, err
		}
	}
	left := func(list client.ObjectList) int {
		total := 0
		for _, ns := range namespaces {
			if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
				return -1
			}
			total += meta.LenList(list)
		}
		return total
	}
	if err := testenv.Poll(ctx, 5*time.Minute, time.Second, func() bool { return left(&jobtokenv1alpha1.ImportJobList{}) == 0 }); err != nil {
		return res, fmt.Errorf("memory return: %d ImportJobs not gone (revocation): %w", left(&jobtokenv1alpha1.ImportJobList{}), err)
	}
	// The batch Jobs, as the garbage collector (which envtest does not run) would delete
	// them with their ImportJob.
	for _, ns := range namespaces {
		if err := c.DeleteAllOf(ctx, &batchv1.Job{}, client.InNamespace(ns), client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			return res, err
		}
	}
	for _, ns := range namespaces {
		if err := c.DeleteAllOf(ctx, &jobtokenv1alpha1.TokenIssuer{}, client.InNamespace(ns)); err != nil {
			return res, err
		}
	}
	if err := testenv.Poll(ctx, time.Minute, time.Second, func() bool { return left(&jobtokenv1alpha1.TokenIssuerList{}) == 0 }); err != nil {
		return res, fmt.Errorf("memory return: TokenIssuers not gone: %w", err)
	}
	deleted := time.Now()
	// Read the heap until it is back within the target or the settle time is over: the
	// figure is the last reading.
	for {
		if s, err = mc.Stats(true); err != nil {
			return res, err
		}
		res.EndHeap, res.EndRSS, res.Settled = s.HeapAlloc, s.RSS, time.Since(deleted)
		if res.Ratio() <= churnReturnRatio || res.Settled >= churnSettle {
			break
		}
		if err := testenv.Sleep(ctx, 10*time.Second); err != nil {
			return res, err
		}
	}
	if o.Profile {
		_ = mc.HeapProfile(filepath.Join(o.WorkDir, "churn-end-heap.pprof"))
	}
	res.Elapsed = time.Since(start)
	say("  all deleted: heap %s after %s (%.3f of its start), RSS %s", mib(res.EndHeap), res.Settled.Round(time.Second), res.Ratio(), mib(res.EndRSS))
	return res, nil
}

// stopManager stops a manager process of the run and says so when it had to be killed:
// a manager that ignores SIGTERM is a finding, not a detail.
func stopManager(p *testenv.Proc, say func(string, ...any)) {
	if err := p.Stop(20 * time.Second); err != nil {
		say("%v", err)
	}
}
