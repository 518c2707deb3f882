// Package demo runs the seed's long import twice on an embedded control plane: once the
// way it fails today (workers handed the submitting user's access token) and once with
// jobtoken (an ImportJob whose workers read a token file the operator keeps fresh). It
// is what `make demo` runs, and its short form is a smoke test in `make test`.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/kubeletsim"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// Options shape a run.
type Options struct {
	// Duration is how long the import is meant to take (records are spread over it).
	Duration time.Duration
	// AccessTTL and SessionMax configure the development issuer.
	AccessTTL  time.Duration
	SessionMax time.Duration
	// Workers per side, and Records per side in all.
	Workers int
	Records int
	// SyncDelay models the kubelet's periodic sync of Secret volumes.
	SyncDelay time.Duration
	// PropagationBudget is the ImportJob's budget for a new token to reach the files.
	PropagationBudget time.Duration
	// WorkDir holds the manager's log and the pods' token directories.
	WorkDir string
	// Out receives the progress view and the final table.
	Out io.Writer
	// ProgressEvery is how often a progress line is printed.
	ProgressEvery time.Duration
}

// Defaults fills the zero fields.
func (o *Options) Defaults() {
	if o.Duration <= 0 {
		o.Duration = 4 * time.Minute
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = 20 * time.Second
	}
	if o.SessionMax <= 0 {
		o.SessionMax = 2 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 3
	}
	if o.Records <= 0 {
		o.Records = 1200
	}
	if o.SyncDelay <= 0 {
		o.SyncDelay = 60 * time.Second
	}
	if o.PropagationBudget <= 0 {
		o.PropagationBudget = 5 * time.Second
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 15 * time.Second
	}
}

const (
	namespace      = "library"
	vaultNamespace = "jobtoken-system"
	clientID       = "import-jobs"
	clientSecret   = "import-jobs-secret"
	submitter      = "librarian"
	submitterPass  = "librarian-password"
	systemUser     = "import-bot"
	systemPass     = "import-bot-password"
	jobName        = "marc-import"
)

// Side counts what one side's workers saw.
type Side struct {
	Imported atomic.Int64
	Failed   atomic.Int64
	Calls    atomic.Int64
	// Unauthorized counts every 401 response, including those a retry then absorbed.
	Unauthorized atomic.Int64
	// Retried counts 401s after which the worker retried with a newer token and succeeded.
	Retried atomic.Int64
}

// Report is the outcome of a run.
type Report struct {
	Elapsed               time.Duration
	Baseline, Jobtoken    *Side
	Rotations, Remints    int64
	SessionMaxima         int64
	TokensSeen            int
	TokensActiveAfterEnd  int
	RefreshReuse          int64
	Revoked               bool
	FirstBaseline401After time.Duration
	ResourceAccepted      int64
	Resource401           map[string]int64
	KeyRotations          int64
	Logouts               int64
}

// Problems lists what a --check run fails on; empty means the run proved its point.
func (r *Report) Problems() []string {
	var p []string
	if n := r.Jobtoken.Failed.Load(); n > 0 {
		p = append(p, fmt.Sprintf("the jobtoken side lost %d records to 401s", n))
	}
	if r.Jobtoken.Imported.Load() == 0 {
		p = append(p, "the jobtoken side imported nothing")
	}
	if r.Baseline.Unauthorized.Load() == 0 {
		p = append(p, "the baseline saw no 401: the run was too short to show the failure")
	}
	if r.TokensActiveAfterEnd > 0 || !r.Revoked {
		p = append(p, fmt.Sprintf("%d of %d tokens still active after the job ended (Revoked=%v)", r.TokensActiveAfterEnd, r.TokensSeen, r.Revoked))
	}
	if r.Remints == 0 {
		p = append(p, "the session maximum was never crossed (no re-mint)")
	}
	if r.RefreshReuse > 0 {
		p = append(p, fmt.Sprintf("the issuer saw %d refresh-token replays", r.RefreshReuse))
	}
	return p
}

// Run performs the demo. It starts and stops everything it needs.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.Defaults()
	start := time.Now()
	say := func(format string, args ...any) {
		_, _ = fmt.Fprintf(o.Out, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	if err := os.MkdirAll(o.WorkDir, 0o750); err != nil {
		return nil, err
	}

	say("starting kube-apiserver and etcd (bin/k8s, built from the Go module proxy)")
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	cl := env.Client

	issuer, err := devissuer.New(devissuer.Config{
		AccessTokenTTL: o.AccessTTL, SessionMax: o.SessionMax,
		Clients: map[string]string{clientID: clientSecret},
		Users:   map[string]string{submitter: submitterPass, systemUser: systemPass},
	})
	if err != nil {
		return nil, err
	}
	if err := issuer.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	defer func() { _ = issuer.Close() }()
	say("development issuer at %s: access tokens live %s, session maximum %s", issuer.URL(), o.AccessTTL, o.SessionMax)

	if err := setupCluster(ctx, cl, issuer.URL(), o); err != nil {
		return nil, err
	}

	logFile, err := os.Create(filepath.Join(o.WorkDir, "manager.log"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopManager, err := startManager(runCtx, env, logFile)
	if err != nil {
		return nil, err
	}
	defer stopManager()
	say("operator started (log: %s)", logFile.Name())

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	sim, err := kubeletsim.New(kubeletsim.Config{Client: cs, Root: filepath.Join(o.WorkDir, "pods"), SyncDelay: o.SyncDelay})
	if err != nil {
		return nil, err
	}
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Start(runCtx) }()
	select {
	case <-sim.Ready():
	case err := <-simDone:
		return nil, fmt.Errorf("the kubelet stand-in stopped before its caches synced: %v", err)
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("the kubelet stand-in's caches did not sync within a minute")
	}
	say("kubelet stand-in started: Secret volumes synced every %s, at once when a pod is nudged", o.SyncDelay)

	// Baseline: the submitting user's access token, handed to the workers (the seed).
	userToken, err := passwordToken(ctx, issuer.URL(), submitter, submitterPass)
	if err != nil {
		return nil, err
	}
	rep := &Report{Baseline: &Side{}, Jobtoken: &Side{}}

	// jobtoken: the ImportJob; its Job's pods are created here (envtest has no job controller).
	if err := cl.Create(ctx, importJob(o)); err != nil {
		return nil, err
	}
	bj := &batchv1.Job{}
	if err := poll(ctx, 60*time.Second, func() bool {
		return cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: jobName}, bj) == nil
	}); err != nil {
		return nil, fmt.Errorf("the operator did not create the Job: %w", err)
	}
	say("ImportJob %s/%s: token minted for %s, Job created; creating %d worker pods", namespace, jobName, systemUser, o.Workers)
	var podDirs []string
	for i := range o.Workers {
		pod := testenv.WorkerPod(bj, fmt.Sprintf("%s-worker-%d", bj.Name, i))
		if err := cl.Create(ctx, pod); err != nil {
			return nil, err
		}
		podDirs = append(podDirs, sim.PodDir(namespace, pod.Name))
	}

	perWorker := (o.Records + o.Workers - 1) / o.Workers
	interval := time.Duration(float64(o.Duration) / float64(perWorker))
	recordsURL := issuer.URL() + "/api/records"
	seen := &tokenSet{}
	var wg sync.WaitGroup
	baselineStart := time.Now()
	var first401 atomic.Int64
	for i := range o.Workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			baselineWorker(runCtx, recordsURL, userToken, perWorker, interval, rep.Baseline, baselineStart, &first401)
		}()
		go func(dir string) {
			defer wg.Done()
			jobtokenWorker(runCtx, recordsURL, dir, perWorker, interval, rep.Jobtoken, seen)
		}(podDirs[i])
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()

	// The disturbances of the seeds, during the run.
	logoutAt := time.After(o.Duration / 3)
	keyAt := time.After(o.Duration / 2)
	tick := time.NewTicker(o.ProgressEvery)
	defer tick.Stop()
	say("importing %d records per side with %d workers each, over about %s", perWorker*o.Workers, o.Workers, o.Duration)
	say("%-9s | %-32s | %-34s", "", "baseline (user's token)", "jobtoken (token file)")
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-logoutAt:
			n := issuer.LogoutUser(submitter)
			say("the submitting user %s logs out (%d session(s) ended)", submitter, n)
		case <-keyAt:
			kid := issuer.RotateSigningKey()
			say("the issuer rotates its signing key (new kid %s): every token signed before is now invalid", kid)
		case <-tick.C:
			job := &jobtokenv1alpha1.ImportJob{}
			_ = cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: jobName}, job)
			say("progress  | imported %5d  401s %5d        | imported %5d  401s %3d (retried %d)  rotations %d  re-mints %d",
				rep.Baseline.Imported.Load(), rep.Baseline.Unauthorized.Load(),
				rep.Jobtoken.Imported.Load(), rep.Jobtoken.Unauthorized.Load(), rep.Jobtoken.Retried.Load(),
				job.Status.Rotations, job.Status.Remints)
			seen.addSecret(ctx, cl)
		case <-workersDone:
			break loop
		}
	}
	seen.addSecret(ctx, cl)
	refresh := readRefreshToken(ctx, cl)
	say("all records attempted; marking the Job Complete (as the job controller would)")
	if err := testenv.MarkJob(ctx, cl, client.ObjectKey{Namespace: namespace, Name: jobName}, batchv1.JobComplete); err != nil {
		return nil, err
	}
	job := &jobtokenv1alpha1.ImportJob{}
	if err := poll(ctx, 60*time.Second, func() bool {
		_ = cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: jobName}, job)
		return meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) != nil
	}); err != nil {
		return nil, fmt.Errorf("the operator did not revoke: %w", err)
	}
	rep.Revoked = meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked)
	rep.Rotations, rep.Remints = job.Status.Rotations, job.Status.Remints
	tokens := seen.list()
	if refresh != "" {
		tokens = append(tokens, refresh)
	}
	rep.TokensSeen = len(tokens)
	for _, t := range tokens {
		if issuer.Active(t) {
			rep.TokensActiveAfterEnd++
		}
	}
	c := issuer.Counters()
	rep.RefreshReuse, rep.SessionMaxima = c.RefreshReuse, c.SessionMaxEnded
	rep.ResourceAccepted, rep.Resource401 = c.ResourceAccepted, c.Resource401
	rep.KeyRotations, rep.Logouts = c.KeyRotations, c.Logouts
	rep.FirstBaseline401After = time.Duration(first401.Load())
	rep.Elapsed = time.Since(start)
	cancel()
	select {
	case err := <-simDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			say("kubelet stand-in: %v", err)
		}
	case <-time.After(10 * time.Second):
	}
	return rep, nil
}

func setupCluster(ctx context.Context, cl client.Client, issuerURL string, o Options) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: vaultNamespace}},
		testenv.ClientSecret(vaultNamespace, "import-jobs-client", clientSecret),
		testenv.UserSecret(namespace, "import-system-user", systemUser, systemPass),
		&jobtokenv1alpha1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: "dev"},
			Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
				TokenIssuerSpec: testenv.DevIssuerSpec(issuerURL, clientID, "import-jobs-client"),
				Allowed: jobtokenv1alpha1.ClusterIssuerAllowed{
					Namespaces: []string{namespace}, Grants: []jobtokenv1alpha1.GrantType{jobtokenv1alpha1.GrantPassword},
				},
			}},
	}
	for _, obj := range objs {
		if err := cl.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

func startManager(ctx context.Context, env *testenv.Env, logTo io.Writer) (func(), error) {
	logger := zap.New(zap.WriteTo(logTo))
	// Libraries that log through the global logger (client-go's reflectors) go there too.
	ctrllog.SetLogger(logger)
	mgr, err := testenv.StartManager(ctx, env.Config, manager.Options{
		VaultNamespace: vaultNamespace, LeaderElection: false,
		Metrics: metricsserver.Options{BindAddress: "0"}, Logger: &logger,
	}, func(mgr ctrl.Manager) error {
		return controllers.SetupAll(mgr, controllers.Config{VaultNamespace: vaultNamespace, IssuerCheckInterval: 2 * time.Second})
	})
	if err != nil {
		return nil, err
	}
	return func() {
		if err := mgr.Stop(); err != nil {
			_, _ = fmt.Fprintln(logTo, err)
		}
	}, nil
}

func importJob(o Options) *jobtokenv1alpha1.ImportJob {
	job := testenv.ImportJob(namespace, jobName, testenv.OnClusterTokenIssuer("dev"), "import-system-user")
	job.Spec.Rotation.PropagationBudget = &metav1.Duration{Duration: o.PropagationBudget}
	return job
}

// passwordToken logs the submitting user in, as the UI would, and returns the access token.
func passwordToken(ctx context.Context, issuerURL, user, pass string) (string, error) {
	access, _, err := testenv.TokenRequest(ctx, issuerURL, clientID, clientSecret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}})
	if err != nil {
		return "", fmt.Errorf("the user's login failed: %w", err)
	}
	return access, nil
}

// poll waits for cond with the shared harness's bounded loop.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return testenv.Poll(ctx, timeout, 200*time.Millisecond, cond)
}
