// Package statemetrics exports the state of ImportJobs and issuers, read from the
// manager's cache at each scrape, and the slack of each rotation. Every replica serves
// the same values (the caches run on all of them, not only on the leader), so the
// series survive a failover; alerts aggregate them with max by the object's labels.
//
// The routine status fields of an ImportJob (its token's expiry among them) may reach
// the API up to --status-interval late, so what must be current is told by the
// reconciler as it writes a token (TokenWritten): the token's expiry, which the
// collector takes over an older one in the status, and the rotation's slack. Only the
// leader writes tokens, so only its series are ahead of the status; max across
// replicas picks them.
package statemetrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// DefaultPropagationBudget is what the API defaults spec.rotation.propagationBudget to.
const DefaultPropagationBudget = 30 * time.Second

// listTimeout bounds a scrape's reads of the cache (they block until it has synced).
const listTimeout = 5 * time.Second

var (
	phaseDesc = prometheus.NewDesc("jobtoken_importjob_phase",
		"1 for the current phase of each ImportJob.", []string{"namespace", "name", "phase"}, nil)
	conditionDesc = prometheus.NewDesc("jobtoken_importjob_condition",
		"1 for each condition an ImportJob carries, with its status and reason.", []string{"namespace", "name", "type", "status", "reason"}, nil)
	expiryDesc = prometheus.NewDesc("jobtoken_importjob_token_expiry_timestamp_seconds",
		"Expiry of the access token the workers of a running ImportJob read (status.tokenExpiresAt), as a Unix time.", []string{"namespace", "name"}, nil)
	budgetDesc = prometheus.NewDesc("jobtoken_importjob_propagation_budget_seconds",
		"spec.rotation.propagationBudget of each running ImportJob: how long a new token may take to reach the workers.", []string{"namespace", "name"}, nil)
	failedDesc = prometheus.NewDesc("jobtoken_importjob_failed_rotation_attempts",
		"status.failedRotationAttempts of each running ImportJob: failed rotations since the last success.", []string{"namespace", "name"}, nil)
	issuerReadyDesc = prometheus.NewDesc("jobtoken_issuer_ready",
		"1 when the issuer's Ready condition is True, else 0; namespace is empty for a ClusterTokenIssuer.", []string{"kind", "namespace", "name", "reason"}, nil)
	scrapeErrorsDesc = prometheus.NewDesc("jobtoken_state_scrape_errors",
		"1 when the last scrape could not read the objects of a kind from the cache.", []string{"kind"}, nil)
)

// Collector reads ImportJobs and issuers from a cache at each scrape.
type Collector struct {
	Reader client.Reader
	// Written holds the expiry of the tokens written since the status last caught up;
	// nil reads the status alone.
	Written *WrittenTokens
}

// Describe sends the descriptors of every metric Collect may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{phaseDesc, conditionDesc, expiryDesc, budgetDesc, failedDesc, issuerReadyDesc, scrapeErrorsDesc} {
		ch <- d
	}
}

// Collect sends the current state.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := func(kind string, err error) {
		v := 0.0
		if err != nil {
			v = 1
		}
		gauge(scrapeErrorsDesc, v, kind)
	}

	jobs := &jobtokenv1alpha1.ImportJobList{}
	err := c.Reader.List(ctx, jobs)
	failed("ImportJob", err)
	if err == nil {
		for i := range jobs.Items {
			collectJob(&jobs.Items[i], c.Written.expiry(&jobs.Items[i]), gauge)
		}
	}
	issuers := &jobtokenv1alpha1.TokenIssuerList{}
	err = c.Reader.List(ctx, issuers)
	failed("TokenIssuer", err)
	if err == nil {
		for i := range issuers.Items {
			is := &issuers.Items[i]
			collectIssuer(string(jobtokenv1alpha1.IssuerKindTokenIssuer), is.Namespace, is.Name, is.Status.Conditions, gauge)
		}
	}
	clusterIssuers := &jobtokenv1alpha1.ClusterTokenIssuerList{}
	err = c.Reader.List(ctx, clusterIssuers)
	failed("ClusterTokenIssuer", err)
	if err == nil {
		for i := range clusterIssuers.Items {
			is := &clusterIssuers.Items[i]
			collectIssuer(string(jobtokenv1alpha1.IssuerKindClusterTokenIssuer), "", is.Name, is.Status.Conditions, gauge)
		}
	}
}

func collectJob(job *jobtokenv1alpha1.ImportJob, expiry time.Time, gauge func(*prometheus.Desc, float64, ...string)) {
	ns, name := job.Namespace, job.Name
	phase := job.Status.Phase
	if phase == "" {
		phase = jobtokenv1alpha1.PhasePending
	}
	gauge(phaseDesc, 1, ns, name, string(phase))
	for _, cond := range job.Status.Conditions {
		gauge(conditionDesc, 1, ns, name, cond.Type, string(cond.Status), cond.Reason)
	}
	if phase != jobtokenv1alpha1.PhaseRunning && phase != jobtokenv1alpha1.PhasePending {
		return
	}
	if !expiry.IsZero() {
		gauge(expiryDesc, float64(expiry.Unix()), ns, name)
	}
	budget := DefaultPropagationBudget
	if b := job.Spec.Rotation.PropagationBudget; b != nil {
		budget = b.Duration
	}
	gauge(budgetDesc, budget.Seconds(), ns, name)
	gauge(failedDesc, float64(job.Status.FailedRotationAttempts), ns, name)
}

func collectIssuer(kind, ns, name string, conds []metav1.Condition, gauge func(*prometheus.Desc, float64, ...string)) {
	ready, reason := 0.0, ""
	for _, c := range conds {
		if c.Type == jobtokenv1alpha1.ConditionReady {
			reason = c.Reason
			if c.Status == metav1.ConditionTrue {
				ready = 1
			}
		}
	}
	gauge(issuerReadyDesc, ready, kind, ns, name, reason)
}

// Slack observes, for each token written to an ImportJob's worker Secret, how long
// before the expiry of the token it replaced it was written: the time the new token had
// to reach the workers. Values below the job's propagation budget mean workers may have
// read an expired token.
var Slack = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "jobtoken_rotation_slack_seconds",
	Help:    "Time between a new access token's write to the worker Secret and the expiry of the token it replaced (negative: the old one had expired).",
	Buckets: []float64{-60, -10, 0, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 1800},
})

// WrittenTokens is what the reconciler tells the metrics as it writes tokens, ahead of
// the status.
type WrittenTokens struct {
	mu      sync.Mutex
	expires map[types.NamespacedName]time.Time
}

// Written is the manager's record of written tokens, shared by its reconciler and its
// collector (the metrics registry it serves is process-wide too).
var Written = &WrittenTokens{}

// TokenWritten records a token written to job's worker Secret at now, expiring at
// expiresAt, that replaced one expiring at replaced (zero for the job's first token).
func (w *WrittenTokens) TokenWritten(job types.NamespacedName, expiresAt, replaced, now time.Time) {
	if !replaced.IsZero() {
		Slack.Observe(replaced.Sub(now).Seconds())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.expires == nil {
		w.expires = map[types.NamespacedName]time.Time{}
	}
	w.expires[job] = expiresAt
}

// Forget drops what was recorded for a job that ended or was deleted.
func (w *WrittenTokens) Forget(job types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.expires, job)
}

// expiry is the later of the token expiry in job's status and the one written last.
func (w *WrittenTokens) expiry(job *jobtokenv1alpha1.ImportJob) time.Time {
	var t time.Time
	if exp := job.Status.TokenExpiresAt; exp != nil {
		t = exp.Time
	}
	if w == nil {
		return t
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if written := w.expires[types.NamespacedName{Namespace: job.Namespace, Name: job.Name}]; written.After(t) {
		t = written
	}
	return t
}

// Register adds the state collector, reading mgr's cache and Written, and the slack
// histogram to reg (the manager serves controller-runtime's metrics.Registry).
func Register(mgr ctrl.Manager, reg prometheus.Registerer) error {
	if err := reg.Register(&Collector{Reader: mgr.GetCache(), Written: Written}); err != nil {
		return err
	}
	return reg.Register(Slack)
}
