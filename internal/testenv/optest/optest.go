// Package optest runs the operator for tests outside the controllers package: the
// development issuer on 127.0.0.1, a namespace with a TokenIssuer on it, and the real
// manager (internal/manager and controllers.SetupAll) acting as the ServiceAccount
// config/default ships.
package optest

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// Options tune Start.
type Options struct {
	// AccessTokenTTL is the issuer's access token lifetime (default one minute).
	AccessTokenTTL time.Duration
	// Setup, when set, is called with the manager before it starts (to register more
	// runnables or metrics).
	Setup func(ctrl.Manager) error
	// WithoutManager leaves the manager to the test (RunManager, or another binary).
	WithoutManager bool
	// Namespace is the namespace to set up, created when missing (default: a new one).
	Namespace string
	// WatchNamespaces limits the manager to these namespaces and its own
	// (--watch-namespaces); empty serves every namespace.
	WatchNamespaces []string
}

// Operator is a running issuer, namespace and manager; Start stops them when the test ends.
type Operator struct {
	t         testing.TB
	env       *testenv.Env
	Issuer    *devissuer.Server
	Namespace string
	// VaultNamespace is the operator's namespace (its stored chains).
	VaultNamespace string
	TTL            time.Duration
	Logs           *testenv.LogBuffer
	watch          []string
}

// IssuerName is the TokenIssuer Start creates in the namespace.
const IssuerName = "dev"

// Start starts the development issuer, creates a namespace with a client Secret and a
// TokenIssuer on the issuer, and runs the manager as shipped's ServiceAccount.
func Start(tb testing.TB, ctx context.Context, env *testenv.Env, shipped *testenv.Shipped, opts Options) *Operator {
	tb.Helper()
	o := &Operator{t: tb, env: env, VaultNamespace: shipped.Namespace, TTL: opts.AccessTokenTTL, Logs: &testenv.LogBuffer{}, watch: opts.WatchNamespaces}
	if o.TTL == 0 {
		o.TTL = time.Minute
	}
	srv, err := devissuer.New(devissuer.Config{
		AccessTokenTTL: o.TTL, Clients: map[string]string{"jobs": "jobs-secret"}, Users: map[string]string{"importer": "importer-password"},
		RecordTokens: true,
	})
	o.must(err)
	o.must(srv.Start("127.0.0.1:0"))
	tb.Cleanup(func() { _ = srv.Close() })
	o.Issuer = srv

	o.Namespace = o.SetUpNamespace(ctx, opts.Namespace)

	if !opts.WithoutManager {
		o.RunManager(ctx, shipped, opts.Setup)
	}
	return o
}

// SetUpNamespace puts the client and user Secrets and the TokenIssuer on the issuer in
// namespace name (created when missing; a new namespace when name is empty) and returns
// its name.
func (o *Operator) SetUpNamespace(ctx context.Context, name string) string {
	o.t.Helper()
	env := o.env
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if name == "" {
		ns.GenerateName = "optest-"
	}
	if err := env.Client.Create(ctx, ns); err != nil && (name == "" || !apierrors.IsAlreadyExists(err)) {
		o.t.Fatal(err)
	}
	o.must(env.Client.Create(ctx, testenv.ClientSecret(ns.Name, "client", "jobs-secret")))
	o.must(env.Client.Create(ctx, testenv.UserSecret(ns.Name, "user", "importer", "importer-password")))
	// Unstructured, so that the development issuer's plain http is allowed explicitly
	// where the API has that switch (an unknown field is dropped where it has not).
	o.must(env.Client.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobtoken.dev/v1alpha1", "kind": "TokenIssuer",
		"metadata": map[string]any{"namespace": ns.Name, "name": IssuerName},
		"spec": map[string]any{"insecureAllowPlainHTTP": true, "oauth2": map[string]any{
			"issuerURL": o.Issuer.URL(), "clientID": "jobs", "clientAuth": string(jobtokenv1alpha1.ClientAuthSecretBasic),
			"clientSecretRef": map[string]any{"name": "client"},
		}},
	}}))
	return ns.Name
}

// RunManager runs the manager in the test process as shipped's ServiceAccount until the
// test ends; setup, when set, is called with it before it starts.
func (o *Operator) RunManager(ctx context.Context, shipped *testenv.Shipped, setup func(ctrl.Manager) error) {
	o.t.Helper()
	t := o.t
	env := o.env
	logger := zap.New(zap.WriteTo(o.Logs))
	mgr, err := testenv.StartManager(ctx, shipped.ManagerConfig(env), manager.Options{
		VaultNamespace: shipped.Namespace, Metrics: metricsserver.Options{BindAddress: "0"}, Logger: &logger, SkipNameValidation: true,
		WatchNamespaces: o.watch,
	}, func(mgr ctrl.Manager) error {
		if err := controllers.SetupAll(mgr, controllers.Config{
			VaultNamespace: shipped.Namespace, IssuerCheckInterval: time.Second, RevocationBudget: 10 * time.Second,
			// Tests ask for rotations in quick succession.
			RotateNowMinInterval: time.Second,
		}); err != nil {
			return err
		}
		if setup != nil {
			return setup(mgr)
		}
		return nil
	})
	o.must(err)
	t.Cleanup(func() {
		if err := mgr.Stop(); err != nil {
			t.Error(err)
		}
	})
}

func (o *Operator) must(err error) {
	o.t.Helper()
	if err != nil {
		o.t.Fatal(err)
	}
}

// ImportJob returns an ImportJob on the issuer with the Password grant of a system user
// (so it holds a refresh chain), rotated at 70% of the token's life without jitter, with
// a one-second propagation budget.
func (o *Operator) ImportJob(name string) *jobtokenv1alpha1.ImportJob {
	job := testenv.ImportJob(o.Namespace, name, testenv.OnTokenIssuer(IssuerName), "user")
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{Jitter: "0", PropagationBudget: &metav1.Duration{Duration: time.Second}}
	return job
}

// RunningJob creates o.ImportJob(name) and waits, up to 30 s, until it runs.
func (o *Operator) RunningJob(ctx context.Context, name string) *jobtokenv1alpha1.ImportJob {
	o.t.Helper()
	o.must(o.env.Client.Create(ctx, o.ImportJob(name)))
	testenv.Eventually(o.t, 30*time.Second, name+" Running", func() bool {
		return o.Job(ctx, name).Status.Phase == jobtokenv1alpha1.PhaseRunning
	})
	return o.Job(ctx, name)
}

// Job reads an ImportJob of the namespace.
func (o *Operator) Job(ctx context.Context, name string) *jobtokenv1alpha1.ImportJob {
	o.t.Helper()
	job := &jobtokenv1alpha1.ImportJob{}
	o.must(o.env.Client.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: name}, job))
	return job
}

// CompleteJob marks the ImportJob's batch Job Complete, as the job controller would
// (envtest runs none).
func (o *Operator) CompleteJob(ctx context.Context, importJob string) {
	o.t.Helper()
	name := o.Job(ctx, importJob).Status.JobName
	o.must(testenv.MarkJob(ctx, o.env.Client, client.ObjectKey{Namespace: o.Namespace, Name: name}, batchv1.JobComplete))
}

// RotateNow asks for a rotation of the ImportJob with the rotate-now annotation, as its
// owner would.
func (o *Operator) RotateNow(ctx context.Context, importJob string) {
	o.t.Helper()
	j := o.Job(ctx, importJob)
	patch := client.MergeFrom(j.DeepCopy())
	metav1.SetMetaDataAnnotation(&j.ObjectMeta, jobtokenv1alpha1.AnnotationRotateNow, time.Now().String())
	o.must(o.env.Client.Patch(ctx, j, patch))
}

// KillChain revokes the ImportJob's stored refresh token at the issuer (RFC 7009), as an
// administrator of the issuer would: the job's next refresh is refused (invalid_grant).
func (o *Operator) KillChain(ctx context.Context, importJob string) {
	o.t.Helper()
	list := &corev1.SecretList{}
	o.must(o.env.Client.List(ctx, list, client.InNamespace(o.VaultNamespace), client.MatchingLabels{
		jobtokenv1alpha1.LabelImportJobNamespace: o.Namespace, jobtokenv1alpha1.LabelImportJobName: importJob,
	}))
	if len(list.Items) != 1 {
		o.t.Fatalf("%d stored chains for %s, want 1", len(list.Items), importJob)
	}
	rt := list.Items[0].Data["refresh_token"]
	if len(rt) == 0 {
		keys := slices.Sorted(maps.Keys(list.Items[0].Data))
		o.t.Fatalf("the stored chain of %s holds no refresh token (keys %v)", importJob, keys)
	}
	form := url.Values{"token": {string(rt)}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.Issuer.URL()+"/revoke", strings.NewReader(form.Encode()))
	o.must(err)
	req.SetBasicAuth("jobs", "jobs-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	o.must(err)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		o.t.Fatalf("revoke at the issuer: %s", resp.Status)
	}
}
