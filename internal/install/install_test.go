//go:build integration

package install

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/chartgen"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/testenv/optest"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.RunTests(m, func(e *testenv.Env) error { env = e; return nil })
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// helm runs the Helm built by `make helm` (HELM_BIN) in the repository root.
func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := os.Getenv("HELM_BIN")
	if bin == "" {
		t.Fatal("HELM_BIN is not set: run the tests through `make test` (or `make helm` and set it)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// TestChartGeneratedFromConfig checks charts/jobtoken/templates/generated is what
// hack/chartgen makes of config/ now: a change to config/ without `make chart` fails here.
func TestChartGeneratedFromConfig(t *testing.T) {
	root := repoRoot(t)
	want, err := chartgen.Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "charts", "jobtoken", chartgen.Dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := chartgen.Dir + "/" + e.Name()
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("charts/jobtoken/%s is not generated from config/ any more: run make chart", name)
		case !bytes.Equal(got, w):
			t.Errorf("charts/jobtoken/%s differs from what config/ generates: run make chart", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("charts/jobtoken/%s is missing: run make chart", name)
	}
}

// normalized drops what legitimately differs between the chart's and config/default's
// rendering: the manager's image (the chart defaults it to its appVersion), the pull
// policy the chart sets, and the annotation that keeps the CRDs on helm uninstall.
func normalized(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	if a := c.GetAnnotations(); a != nil {
		delete(a, "helm.sh/resource-policy")
		c.SetAnnotations(a)
	}
	if c.GetKind() == "Deployment" {
		containers, _, _ := unstructured.NestedSlice(c.Object, "spec", "template", "spec", "containers")
		for _, ct := range containers {
			m := ct.(map[string]any)
			m["image"] = "IMAGE"
			delete(m, "imagePullPolicy")
		}
		_ = unstructured.SetNestedSlice(c.Object, containers, "spec", "template", "spec", "containers")
	}
	return c.Object
}

// firstDiff shows the first line where the chart's rendering (got) and config/'s differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: chart %q, config %q", i+1, gl, wl)
		}
	}
	return "no line differs"
}

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// TestChartRendersConfigDefault checks `helm lint` passes and that `helm template` with
// the default values renders exactly the objects of config/default (image aside), so the
// hand-written Deployment, Service and Namespace templates cannot drift from config/.
func TestChartRendersConfigDefault(t *testing.T) {
	helm(t, "lint", "--strict", "charts/jobtoken")
	objs, err := chartgen.Decode(helm(t, "template", "jobtoken", "charts/jobtoken", "--namespace", chartgen.SourceNamespace, "--set", "createNamespace=true"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := chartgen.Render(repoRoot(t), "config/default")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		got[key(o)] = o
	}
	for _, w := range want {
		g, ok := got[key(w)]
		if !ok {
			t.Errorf("the chart does not render %s", key(w))
			continue
		}
		delete(got, key(w))
		if !apiequality.Semantic.DeepEqual(normalized(g), normalized(w)) {
			gy, _ := yaml.Marshal(normalized(g))
			wy, _ := yaml.Marshal(normalized(w))
			t.Errorf("the chart renders %s unlike config/default (run make chart, or mend the chart's template of it):\n%s", key(w), firstDiff(string(gy), string(wy)))
		}
	}
	for k := range got {
		t.Errorf("the chart renders %s, which config/default does not", k)
	}
	if len(want) < 20 {
		t.Fatalf("config/default renders only %d objects", len(want))
	}
}

// apply applies manifests server-side to the test API server, as a cluster admin would.
func apply(t *testing.T, ctx context.Context, manifests []byte) {
	t.Helper()
	if _, err := env.Kubectl(ctx, manifests, "apply", "--server-side", "--force-conflicts", "--field-manager", "install-test", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// runsImportJob runs the manager in the test process as the ServiceAccount an install
// created in ns, with only the RBAC it installed, and checks it serves an ImportJob.
func runsImportJob(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	sa := "jobtoken-controller-manager"
	shipped := &testenv.Shipped{Namespace: ns, ServiceAccount: sa}
	for _, r := range []struct{ group, resource, verb string }{
		{"jobtoken.dev", "importjobs", "watch"}, {"coordination.k8s.io", "leases", "create"}, {"", "secrets", "create"},
	} {
		attrs := authorizationv1.ResourceAttributes{Group: r.group, Resource: r.resource, Verb: r.verb, Namespace: ns}
		if err := env.WaitAllowed(ctx, shipped.ManagerUser(), []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}, attrs); err != nil {
			t.Fatal(err)
		}
	}
	op := optest.Start(t, ctx, env, shipped, optest.Options{})
	job := op.RunningJob(ctx, "after-install")
	if job.Status.TokenExpiresAt == nil || !strings.HasPrefix(job.Status.SecretName, "after-install") {
		t.Errorf("the ImportJob runs without a token: %+v", job.Status)
	}
	if strings.Contains(op.Logs.String(), "forbidden") {
		t.Errorf("the manager was refused something by the installed RBAC")
	}
}

// TestHelmInstall applies `helm template` output to the test API server in a namespace
// of its own, with values changed from the defaults, and runs the manager on the RBAC
// the chart installed.
func TestHelmInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "jobtoken-helm"
	out := helm(t, "template", "jobtoken", "charts/jobtoken", "--namespace", ns, "--set",
		"createNamespace=true,replicas=1,image.tag=v9.9.9,issuer.requestTimeout=5s,metrics.enabled=false,networkPolicy.enabled=false")
	apply(t, ctx, out)

	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "jobtoken-controller-manager"}, dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "jobtoken/manager:v9.9.9" || *dep.Spec.Replicas != 1 || !slices.Contains(c.Args, "--issuer-request-timeout=5s") ||
		slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-bind-address") }) {
		t.Errorf("the Deployment does not follow the values: image %s, replicas %d, args %v", c.Image, *dep.Spec.Replicas, c.Args)
	}
	crb := &rbacv1.ClusterRoleBinding{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "jobtoken-manager-rolebinding"}, crb); err != nil {
		t.Fatal(err)
	}
	if crb.Subjects[0].Namespace != ns {
		t.Errorf("the manager's ClusterRoleBinding names the ServiceAccount in %q, want %q", crb.Subjects[0].Namespace, ns)
	}
	pdb := &unstructured.Unstructured{}
	pdb.SetAPIVersion("policy/v1")
	pdb.SetKind("PodDisruptionBudget")
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "jobtoken-controller-manager"}, pdb); !apierrors.IsNotFound(err) {
		t.Errorf("a single replica got a PodDisruptionBudget (err %v)", err)
	}
	runsImportJob(t, ctx, ns)
}

// TestReleaseManifest writes dist/install.yaml the way `make release` does, applies it
// to the test API server and runs the manager on the RBAC it installed.
func TestReleaseManifest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dist := t.TempDir()
	const version = "v0.0.0-installtest"
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "hack", "release.sh"), "manifests")
	cmd.Env = append(os.Environ(), "VERSION="+version, "DIST="+dist, "KUBECTL="+env.KubectlPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/release.sh manifests: %v\n%s", err, out)
	}
	manifest, err := os.ReadFile(filepath.Join(dist, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := chartgen.Decode(manifest)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if v := o.GetLabels()["app.kubernetes.io/version"]; v != version {
			t.Errorf("%s is labelled version %q, want %q", key(o), v, version)
		}
	}
	for _, k := range []string{"CustomResourceDefinition", "ClusterRole", "ValidatingAdmissionPolicy", "Deployment", "ServiceAccount"} {
		if kinds[k] == 0 {
			t.Errorf("install.yaml holds no %s", k)
		}
	}
	apply(t, ctx, manifest)
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: chartgen.SourceNamespace, Name: "jobtoken-controller-manager"}, dep); err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "jobtoken/manager:"+version {
		t.Errorf("the installed Deployment runs %s, want jobtoken/manager:%s", img, version)
	}
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "importjobs." + jobtokenv1alpha1.GroupVersion.Group}, crd); err != nil {
		t.Fatal(err)
	}
	if crd.GetLabels()["app.kubernetes.io/version"] != version {
		t.Errorf("the applied CRD is not labelled with the release")
	}
	runsImportJob(t, ctx, chartgen.SourceNamespace)
}
