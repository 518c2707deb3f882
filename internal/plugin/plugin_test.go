package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

var (
	env     *testenv.Env
	shipped *testenv.Shipped
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.RunTests(m, func(e *testenv.Env) error {
		env = e
		var err error
		shipped, err = env.InstallShipped(context.Background())
		return err
	})
}

// plugin runs kubectl-jobtoken with args as a person would, returning stdout and stderr.
func plugin(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// TestPluginCommands runs status, rotate, history and revoke as documented
// (docs/kubectl-plugin.md), as a person holding the shipped ImportJob editor role and
// the right to read events, with the real manager (on its shipped RBAC) serving an
// ImportJob from the development issuer.
func TestPluginCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := newHarness(t, ctx)
	job := h.runningJob("marc-import")

	// A person's kubeconfig: a client certificate for the user the roles are bound to,
	// who may edit the namespace's workloads (the admission policies want create on Jobs
	// from whoever changes an ImportJob) and ImportJobs, and list its events.
	const person = "import-operator"
	if _, err := env.Tenant(ctx, h.ns, person, testenv.Grants{
		ClusterRoles: []string{"system:aggregate-to-edit", "jobtoken-importjob-editor-role"},
		Rules:        []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}}},
	}); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: person}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--kubeconfig", kubeconfig, "-n", h.ns}
	var outputs []string
	run := func(args ...string) (string, error) {
		t.Helper()
		out, errOut, err := plugin(ctx, append(args, flags...)...)
		outputs = append(outputs, out, errOut)
		if err != nil {
			outputs = append(outputs, err.Error())
		}
		return out, err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("kubectl jobtoken %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	// status: the table, then JSON with the numbers.
	table := mustRun("status")
	if !regexp.MustCompile(`(?m)^NAME\s+PHASE\s+EXPIRES IN\s+LAST ROTATION\s+ROTATIONS\s+REMINTS\s+ISSUER\s+CHAIN$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^marc-import\s+Running\s+\S+\s+never\s+0\s+0\s+TokenIssuer/dev\s+Healthy$`).MatchString(table) {
		t.Errorf("status table:\n%s", table)
	}
	var list StatusList
	if err := json.Unmarshal([]byte(mustRun("status", "marc-import", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Chain != ChainHealthy || list.Items[0].ExpiresInSeconds == nil ||
		*list.Items[0].ExpiresInSeconds <= 0 || *list.Items[0].ExpiresInSeconds > int64(h.ttl/time.Second) {
		t.Errorf("status -o json: %+v", list)
	}
	var yamlList StatusList
	if err := yaml.Unmarshal([]byte(mustRun("status", "-o", "yaml")), &yamlList); err != nil || len(yamlList.Items) != 1 || yamlList.Items[0].Namespace != h.ns {
		t.Errorf("status -o yaml: %+v (%v)", yamlList, err)
	}
	// -A needs cluster-wide list rights the person lacks: the API's refusal is shown.
	if _, err := run("status", "-A"); !apierrors.IsForbidden(err) {
		t.Errorf("status -A as a namespace user: err %v, want Forbidden", err)
	}
	if _, err := run("status", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("status -o xml: err %v, want one naming --output", err)
	}
	if _, err := run("status", "missing"); !apierrors.IsNotFound(err) {
		t.Errorf("status of a missing job: err %v, want NotFound", err)
	}

	// rotate: a new token revision, its expiry printed.
	before := h.getJob(job.Name)
	out := mustRun("rotate", "marc-import")
	after := h.getJob(job.Name)
	if after.Status.TokenRevision <= before.Status.TokenRevision || after.Status.Rotations+after.Status.Remints <= before.Status.Rotations+before.Status.Remints {
		t.Errorf("rotate returned but the job was not rotated: revision %d -> %d", before.Status.TokenRevision, after.Status.TokenRevision)
	}
	if want := "importjob/marc-import rotated: token revision " + itoa(after.Status.TokenRevision) + " expires at " +
		after.Status.TokenExpiresAt.UTC().Format(time.RFC3339); !strings.Contains(out, want) {
		t.Errorf("rotate printed %q, want it to contain %q", out, want)
	}
	if _, ok := after.Annotations[jobtokenv1alpha1.AnnotationRotateNow]; ok {
		t.Errorf("the rotate-now annotation is still set after rotate returned")
	}

	// history: minted first, then the requested rotation, oldest first.
	hist := mustRun("history", "marc-import")
	iMinted, iRotated := strings.Index(hist, " Minted "), strings.Index(hist, " Rotated ")
	if !strings.HasPrefix(hist, "TIME") || iMinted < 0 || iRotated < iMinted || !strings.Contains(hist, "rotate-now") {
		t.Errorf("history lacks Minted then the requested rotation:\n%s", hist)
	}

	// revoke: the pair held now dies at the issuer, the Secret goes, the Job stays.
	ws := &corev1.Secret{}
	h.must(env.Client.Get(ctx, client.ObjectKey{Namespace: h.ns, Name: after.Status.SecretName}, ws))
	held := string(ws.Data[jobtokenv1alpha1.KeyAccessToken])
	if !h.issuer.Active(held) {
		t.Fatal("the held access token is inactive before revoke: the check would prove nothing")
	}
	out = mustRun("revoke", "marc-import")
	if !strings.Contains(out, "importjob/marc-import revoked: phase Expired") {
		t.Errorf("revoke printed %q", out)
	}
	ended := h.getJob(job.Name)
	if ended.Status.Phase != jobtokenv1alpha1.PhaseExpired || !meta.IsStatusConditionTrue(ended.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) {
		t.Errorf("after revoke: phase %s, conditions %+v", ended.Status.Phase, ended.Status.Conditions)
	}
	if h.issuer.Active(held) {
		t.Errorf("the access token is still active at the issuer after revoke")
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ws), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("the worker Secret is still there after revoke (err %v)", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: h.ns, Name: ended.Status.JobName}, &batchv1.Job{}); err != nil {
		t.Errorf("revoke removed the batch Job: %v", err)
	}
	if !regexp.MustCompile(`(?m)^marc-import\s+Expired\s+-\s+.*\s+Revoked$`).MatchString(mustRun("status")) {
		t.Errorf("status after revoke:\n%s", outputs[len(outputs)-2])
	}
	if _, err := run("rotate", "marc-import"); err == nil || !strings.Contains(err.Error(), "Expired, not Running") {
		t.Errorf("rotate of an ended job: err %v, want one naming its phase", err)
	}
	if _, err := run("revoke", "marc-import"); err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Errorf("revoke of an ended job: err %v", err)
	}
	if !strings.Contains(mustRun("history", "marc-import"), " Revoked ") {
		t.Errorf("history lacks the revocation")
	}

	// Nothing the plugin printed holds a token.
	all := strings.Join(outputs, "\n")
	for _, tok := range h.issuer.Issued().All() {
		if strings.Contains(all, tok) {
			t.Fatalf("the plugin printed token bytes")
		}
	}
	if len(h.issuer.Issued().All()) < 2 {
		t.Fatalf("the issuer issued %d tokens: the output scan would prove nothing", len(h.issuer.Issued().All()))
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// harness is the development issuer, a namespace with a TokenIssuer on it, and the real
// manager acting as its shipped ServiceAccount.
type harness struct {
	t      *testing.T
	ctx    context.Context
	ns     string
	ttl    time.Duration
	issuer *devissuer.Server
}

func newHarness(t *testing.T, ctx context.Context) *harness {
	t.Helper()
	h := &harness{t: t, ctx: ctx, ttl: time.Minute}
	srv, err := devissuer.New(devissuer.Config{
		AccessTokenTTL: h.ttl, Clients: map[string]string{"jobs": "jobs-secret"}, RecordTokens: true,
	})
	h.must(err)
	h.must(srv.Start("127.0.0.1:0"))
	t.Cleanup(func() { _ = srv.Close() })
	h.issuer = srv

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "plugin-"}}
	h.must(env.Client.Create(ctx, ns))
	h.ns = ns.Name
	h.must(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "client"},
		Data:       map[string][]byte{"client-secret": []byte("jobs-secret")},
	}))
	// Unstructured, so that the development issuer's plain http is allowed explicitly
	// where the API has that switch (an unknown field is dropped where it has not).
	h.must(env.Client.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobtoken.dev/v1alpha1", "kind": "TokenIssuer",
		"metadata": map[string]any{"namespace": h.ns, "name": "dev"},
		"spec": map[string]any{"insecureAllowPlainHTTP": true, "oauth2": map[string]any{
			"issuerURL": srv.URL(), "clientID": "jobs", "clientAuth": string(jobtokenv1alpha1.ClientAuthSecretBasic),
			"clientSecretRef": map[string]any{"name": "client"},
		}},
	}}))

	logger := zap.New(zap.WriteTo(&testenv.LogBuffer{}))
	mgr, err := manager.New(shipped.ManagerConfig(env), manager.Options{
		VaultNamespace: shipped.Namespace, Metrics: metricsserver.Options{BindAddress: "0"}, Logger: &logger, SkipNameValidation: true,
	})
	h.must(err)
	h.must(controllers.SetupAll(mgr, controllers.Config{VaultNamespace: shipped.Namespace, IssuerCheckInterval: time.Second, RevocationBudget: 10 * time.Second}))
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager stopped: %v", err)
		}
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("the manager did not stop within 30s")
		}
	})
	return h
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// runningJob creates a ClientCredentials ImportJob and waits until it runs.
func (h *harness) runningJob(name string) *jobtokenv1alpha1.ImportJob {
	h.t.Helper()
	job := &jobtokenv1alpha1.ImportJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
		Spec: jobtokenv1alpha1.ImportJobSpec{
			IssuerRef:   jobtokenv1alpha1.IssuerReference{Kind: jobtokenv1alpha1.IssuerKindTokenIssuer, Name: "dev"},
			Credentials: jobtokenv1alpha1.CredentialsSpec{Grant: jobtokenv1alpha1.GrantClientCredentials},
			Rotation:    jobtokenv1alpha1.RotationSpec{Jitter: "0", PropagationBudget: &metav1.Duration{Duration: time.Second}},
			Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "worker", Image: "busybox"}},
			}}}},
		},
	}
	h.must(env.Client.Create(h.ctx, job))
	deadline := time.Now().Add(30 * time.Second)
	for h.getJob(name).Status.Phase != jobtokenv1alpha1.PhaseRunning {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s not Running after 30s: %+v", name, h.getJob(name).Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h.getJob(name)
}

func (h *harness) getJob(name string) *jobtokenv1alpha1.ImportJob {
	h.t.Helper()
	job := &jobtokenv1alpha1.ImportJob{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, job))
	return job
}
