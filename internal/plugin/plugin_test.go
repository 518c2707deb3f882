//go:build integration

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
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/testenv/optest"
)

var (
	env     *testenv.Env
	shipped *testenv.Shipped
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.RunShippedTests(m, func(e *testenv.Env, s *testenv.Shipped) error {
		env, shipped = e, s
		return nil
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
	op := optest.Start(t, ctx, env, shipped, optest.Options{})
	job := op.RunningJob(ctx, "marc-import")
	getJob := func() *jobtokenv1alpha1.ImportJob { return op.Job(ctx, job.Name) }

	// A person's kubeconfig: a client certificate for the user the roles are bound to,
	// who may edit the namespace's workloads (the admission policies want create on Jobs
	// from whoever changes an ImportJob) and ImportJobs, and list its events.
	const person = "import-operator"
	if _, err := env.Tenant(ctx, op.Namespace, person, testenv.Grants{
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
	flags := []string{"--kubeconfig", kubeconfig, "-n", op.Namespace}
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
		*list.Items[0].ExpiresInSeconds <= 0 || *list.Items[0].ExpiresInSeconds > int64(op.TTL/time.Second) {
		t.Errorf("status -o json: %+v", list)
	}
	var yamlList StatusList
	if err := yaml.Unmarshal([]byte(mustRun("status", "-o", "yaml")), &yamlList); err != nil || len(yamlList.Items) != 1 || yamlList.Items[0].Namespace != op.Namespace {
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
	before := getJob()
	out := mustRun("rotate", "marc-import")
	after := getJob()
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
	must(t, env.Client.Get(ctx, client.ObjectKey{Namespace: op.Namespace, Name: after.Status.SecretName}, ws))
	held := string(ws.Data[jobtokenv1alpha1.KeyAccessToken])
	if !op.Issuer.Active(held) {
		t.Fatal("the held access token is inactive before revoke: the check would prove nothing")
	}
	out = mustRun("revoke", "marc-import")
	if !strings.Contains(out, "importjob/marc-import revoked: phase Expired") {
		t.Errorf("revoke printed %q", out)
	}
	ended := getJob()
	if ended.Status.Phase != jobtokenv1alpha1.PhaseExpired || !meta.IsStatusConditionTrue(ended.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) {
		t.Errorf("after revoke: phase %s, conditions %+v", ended.Status.Phase, ended.Status.Conditions)
	}
	if op.Issuer.Active(held) {
		t.Errorf("the access token is still active at the issuer after revoke")
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ws), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("the worker Secret is still there after revoke (err %v)", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: op.Namespace, Name: ended.Status.JobName}, &batchv1.Job{}); err != nil {
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
	if testenv.NewTokenScan(op.Issuer.Issued().All()).Found(strings.Join(outputs, "\n")) {
		t.Fatalf("the plugin printed token bytes")
	}
	if len(op.Issuer.Issued().All()) < 2 {
		t.Fatalf("the issuer issued %d tokens: the output scan would prove nothing", len(op.Issuer.Issued().All()))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
