//go:build integration

package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// The integration tests run the real manager against the real kube-apiserver (envtest)
// and the development issuer on 127.0.0.1. There is no kubelet or job controller: tests
// mark the batch Job Complete or Failed themselves and create pods by hand.

const (
	vaultNamespace = "jobtoken-system"
	clientID       = "jobs"
	clientSecret   = "jobs-secret"
	userName       = "importer"
	userPassword   = "importer-password"
	// revocationBudget is short so a failing revocation releases the finalizer quickly.
	revocationBudget = 6 * time.Second
)

var (
	env *testenv.Env
	// shipped is config/default as installed: the manager's ServiceAccount and RBAC, the
	// people roles and the admission policies. Every manager of these tests acts as that
	// ServiceAccount, so a missing or excess rule shows.
	shipped *testenv.Shipped
)

// globalLogs receives what is logged through controller-runtime's global logger (the
// orphan sweep and other runnables log through it, not through the manager's logger);
// each harness routes it into its own log buffer.
var globalLogs = &logRouter{}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(globalLogs), zap.UseDevMode(true)))
	testenv.RunShippedTests(m, func(e *testenv.Env, s *testenv.Shipped) error {
		env, shipped = e, s
		if shipped.Namespace != vaultNamespace {
			return fmt.Errorf("config/default installs the operator in %s, the tests expect %s", shipped.Namespace, vaultNamespace)
		}
		return nil
	})
}

// logRouter writes to the current test's buffer, or nowhere between tests.
type logRouter struct {
	mu sync.Mutex
	to io.Writer
}

func (r *logRouter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.to == nil {
		return len(p), nil
	}
	return r.to.Write(p)
}

func (r *logRouter) route(w io.Writer) {
	r.mu.Lock()
	r.to = w
	r.mu.Unlock()
}

// harness is one test's issuer, namespace and manager(s). When the test ends it stops
// the managers and scans every log line they wrote, the events and the ImportJobs of its
// namespace for the bytes of every token the issuer issued.
type harness struct {
	t      *testing.T
	ctx    context.Context
	ns     string
	issuer *devissuer.Server
	logs   *testenv.LogBuffer
	stops  []func()
	jobs   []string // names of the ImportJobs built by importJob
}

type harnessOptions struct {
	issuer devissuer.Config
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cfg := opts.issuer
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 4 * time.Second
	}
	clients := map[string]string{clientID: clientSecret}
	maps.Copy(clients, cfg.Clients)
	cfg.Clients = clients
	cfg.Users = map[string]string{userName: userPassword}
	cfg.RecordTokens = true
	srv, err := devissuer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, issuer: srv, logs: &testenv.LogBuffer{}}
	globalLogs.route(h.logs)
	t.Cleanup(func() {
		for i := len(h.stops) - 1; i >= 0; i-- {
			h.stops[i]()
		}
		globalLogs.route(nil)
		_ = srv.Close()
		h.scanOutputs()
	})

	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "it-"}}
	h.must(env.Client.Create(ctx, nsObj))
	h.ns = nsObj.Name
	h.must(env.Client.Create(ctx, testenv.ClientSecret(h.ns, "client", clientSecret)))
	h.must(env.Client.Create(ctx, testenv.UserSecret(h.ns, "user", userName, userPassword)))
	h.must(env.Client.Create(ctx, &jobtokenv1alpha1.TokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "dev"},
		Spec:       testenv.DevIssuerSpec(srv.URL(), clientID, "client"),
	}))
	return h
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

type managerOptions struct {
	leaderElection bool
	name           string
}

// runningManager is a started manager: stop ends it (and waits), elected is closed once
// it leads (at once without leader election).
type runningManager struct {
	stop    func()
	elected <-chan struct{}
}

// startManager runs the operator's manager until the test ends or its stop is called.
func (h *harness) startManager(opts managerOptions) *runningManager {
	h.t.Helper()
	logger := zap.New(zap.WriteTo(h.logs), zap.UseDevMode(true))
	if opts.name != "" {
		logger = logger.WithValues("manager", opts.name)
	}
	mgr, err := testenv.StartManager(h.ctx, shipped.ManagerConfig(env), manager.Options{
		VaultNamespace:     vaultNamespace,
		LeaderElection:     opts.leaderElection,
		LeaseDuration:      4 * time.Second,
		RenewDeadline:      3 * time.Second,
		RetryPeriod:        500 * time.Millisecond,
		Metrics:            metricsserver.Options{BindAddress: "0"},
		Logger:             &logger,
		SkipNameValidation: true,
	}, func(mgr ctrl.Manager) error {
		return SetupAll(mgr, Config{
			VaultNamespace:      vaultNamespace,
			IssuerCheckInterval: time.Second,
			RevocationBudget:    revocationBudget,
			MaxRetryBackoff:     4 * time.Second,
			OrphanSweepInterval: 2 * time.Second,
			OrphanGrace:         time.Second,
			// Tests ask for rotations seconds apart.
			RotateNowMinInterval: time.Second,
			// Every status change is written, so the tests read counters without waiting.
			StatusInterval: -1,
		})
	})
	h.must(err)
	stop := func() {
		if err := mgr.Stop(); err != nil {
			h.t.Error(err)
		}
	}
	h.stops = append(h.stops, stop)
	return &runningManager{stop: stop, elected: mgr.Elected()}
}

// runningJob creates an ImportJob with the grant and waits until it runs.
func (h *harness) runningJob(name string, grant jobtokenv1alpha1.GrantType) *jobtokenv1alpha1.ImportJob {
	h.t.Helper()
	job := h.importJob(name, grant)
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, name+" running", func() bool { return h.getJob(name).Status.Phase == jobtokenv1alpha1.PhaseRunning })
	return h.getJob(name)
}

// importJob returns an ImportJob on the harness issuer with fast rotation settings.
func (h *harness) importJob(name string, grant jobtokenv1alpha1.GrantType) *jobtokenv1alpha1.ImportJob {
	h.jobs = append(h.jobs, name)
	job := testenv.ImportJob(h.ns, name, testenv.OnTokenIssuer("dev"), "user")
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{Fraction: "0.5", Jitter: "0", PropagationBudget: &metav1.Duration{Duration: time.Second}}
	if grant != jobtokenv1alpha1.GrantPassword {
		job.Spec.Credentials = jobtokenv1alpha1.CredentialsSpec{Grant: grant}
	}
	return job
}

func (h *harness) getJob(name string) *jobtokenv1alpha1.ImportJob {
	h.t.Helper()
	job := &jobtokenv1alpha1.ImportJob{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, job))
	return job
}

func conditionTrue(job *jobtokenv1alpha1.ImportJob, t string) bool {
	return meta.IsStatusConditionTrue(job.Status.Conditions, t)
}

func (h *harness) workerSecret(job *jobtokenv1alpha1.ImportJob) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: workerSecretName(job)}, s)
	return s, err
}

func (h *harness) vaultSecret(job *jobtokenv1alpha1.ImportJob) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: vaultNamespace, Name: chainSecretName(job)}, s)
	return s, err
}

// markJob sets the batch Job's terminal condition, as the job controller would.
func (h *harness) markJob(name string, t batchv1.JobConditionType) {
	h.t.Helper()
	h.must(testenv.MarkJob(h.ctx, env.Client, client.ObjectKey{Namespace: h.ns, Name: name}, t))
}

// createPod adds a running pod of the batch Job, as the job controller would.
func (h *harness) createPod(job *batchv1.Job, name string) *corev1.Pod {
	h.t.Helper()
	pod := testenv.WorkerPod(job, name)
	h.must(env.Client.Create(h.ctx, pod))
	return pod
}

// assertNoReuse checks the issuer never saw a refresh token replayed.
func (h *harness) assertNoReuse() {
	h.t.Helper()
	if c := h.issuer.Counters(); c.RefreshReuse != 0 {
		h.t.Errorf("the issuer saw %d refresh-token replays, want 0", c.RefreshReuse)
	}
}

// events returns the notes of the events about an object, with their reasons.
func (h *harness) events(name string) []string {
	h.t.Helper()
	var out []string
	list := &corev1.EventList{}
	h.must(env.Client.List(h.ctx, list, client.InNamespace(h.ns)))
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}

func hasEvent(events []string, reason string) bool {
	for _, e := range events {
		if strings.HasPrefix(e, reason+":") {
			return true
		}
	}
	return false
}

// leaseHolder returns the holder of the manager's leader-election lease ("" when none).
func (h *harness) leaseHolder() string {
	h.t.Helper()
	lease := &coordinationv1.Lease{}
	if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: vaultNamespace, Name: manager.LeaderElectionID}, lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// assertNoTokens fails if text holds the bytes of a token the scan looks for.
func (h *harness) assertNoTokens(where, text string, scan *testenv.TokenScan) {
	h.t.Helper()
	if scan.Found(text) {
		h.t.Errorf("token bytes found in %s", where)
	}
}

// scanOutputs checks the manager's logs, the events and the ImportJobs of the test's
// namespace against every token the issuer issued. It runs after the managers stopped,
// so it sees every line they wrote.
func (h *harness) scanOutputs() {
	h.t.Helper()
	logs := h.logs.String()
	if logs == "" {
		h.t.Errorf("the manager logged nothing: the token scan of its logs would prove nothing")
	}
	mentioned := len(h.jobs) == 0
	for _, name := range h.jobs {
		mentioned = mentioned || strings.Contains(logs, `"`+name+`"`) || strings.Contains(logs, "/"+name+`"`)
	}
	if !mentioned {
		h.t.Errorf("the manager's logs mention none of the ImportJobs %v: the token scan would prove nothing", h.jobs)
	}
	scan := testenv.NewTokenScan(h.issuer.Issued().All())
	if scan.Empty() {
		return
	}
	h.assertNoTokens("the manager's logs", logs, scan)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := &corev1.EventList{}
	if err := env.Client.List(ctx, events, client.InNamespace(h.ns)); err != nil {
		h.t.Errorf("list events: %v", err)
	}
	jobs := &jobtokenv1alpha1.ImportJobList{}
	if err := env.Client.List(ctx, jobs, client.InNamespace(h.ns)); err != nil {
		h.t.Errorf("list ImportJobs: %v", err)
	}
	for _, what := range []struct {
		where string
		obj   any
	}{{"the events", events}, {"the ImportJobs", jobs}} {
		data, err := json.Marshal(what.obj)
		if err != nil {
			h.t.Errorf("marshal %s: %v", what.where, err)
		}
		h.assertNoTokens(what.where, string(data), scan)
	}
}
