//go:build integration

package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.RunTests(m, func(e *testenv.Env) error {
		env = e
		return nil
	})
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func fromYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("bad test YAML: %v\n%s", err, doc)
	}
	return u
}

func samplePaths(t *testing.T) []string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(root, "config", "samples", "jobtoken_*.yaml"))
	if err != nil || len(paths) < 6 {
		t.Fatalf("expected at least 6 samples, found %d (%v)", len(paths), err)
	}
	return paths
}

func TestSamplesAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	grants := map[string]bool{}
	for _, path := range samplePaths(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		obj := fromYAML(t, string(data))
		if obj.GetKind() != "ClusterTokenIssuer" {
			obj.SetNamespace(ns)
		}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Errorf("%s refused: %v", filepath.Base(path), err)
			continue
		}
		if obj.GetKind() == "ImportJob" {
			grant, _, _ := unstructured.NestedString(obj.Object, "spec", "credentials", "grant")
			grants[grant] = true
			// Defaults the API server fills in.
			fraction, _, _ := unstructured.NestedString(obj.Object, "spec", "rotation", "fraction")
			mount, _, _ := unstructured.NestedString(obj.Object, "spec", "tokenMountPath")
			if fraction == "" || mount != "/var/run/secrets/jobtoken.dev" {
				t.Errorf("%s: defaults not applied: fraction=%q tokenMountPath=%q", filepath.Base(path), fraction, mount)
			}
		}
	}
	for _, g := range []string{"ClientCredentials", "Password", "TokenExchange", "RefreshToken"} {
		if !grants[g] {
			t.Errorf("no sample ImportJob uses grant %s", g)
		}
	}
}

const validJob = `
apiVersion: jobtoken.dev/v1alpha1
kind: ImportJob
metadata: {name: job}
spec:
  issuerRef: {kind: TokenIssuer, name: idp}
  credentials: {grant: ClientCredentials}
  template:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: w, image: busybox}]
`

const validIssuer = `
apiVersion: jobtoken.dev/v1alpha1
kind: TokenIssuer
metadata: {name: idp}
spec:
  oauth2:
    issuerURL: https://idp.example.com
    clientID: jobs
    clientSecretRef: {name: s}
`

const validClusterIssuer = `
apiVersion: jobtoken.dev/v1alpha1
kind: ClusterTokenIssuer
metadata: {name: idp}
spec:
  oauth2:
    issuerURL: https://idp.example.com
    clientID: jobs
    clientSecretRef: {name: s}
  allowed:
    namespaces: [imports]
    grants: [ClientCredentials]
`

func manyHosts(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d.example", i)
	}
	return out
}

// set applies dotted-path edits to a copy of a valid object; a nil value removes the field.
func set(t *testing.T, base string, edits map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := fromYAML(t, base)
	for path, value := range edits {
		fields := strings.Split(path, ".")
		if value == nil {
			unstructured.RemoveNestedField(u.Object, fields...)
			continue
		}
		if err := unstructured.SetNestedField(u.Object, value, fields...); err != nil {
			t.Fatalf("set %s: %v", path, err)
		}
	}
	return u
}

func TestInvalidObjectsAreRefused(t *testing.T) {
	ns := newNamespace(t)
	podSpec := "spec.template.spec.template.spec."
	cases := []struct {
		name  string
		base  string
		edits map[string]any
		// want are substrings the API server's message must contain: the field at fault.
		want []string
	}{
		{"issuer with oauth2 and folio", validIssuer, map[string]any{"spec.folio": map[string]any{"url": "https://f", "tenant": "t"}}, []string{"oauth2 or folio"}},
		{"issuer with neither", validIssuer, map[string]any{"spec.oauth2": nil, "spec.x": nil}, []string{"oauth2 or folio"}},
		{"issuerURL and tokenURL", validIssuer, map[string]any{"spec.oauth2.tokenURL": "https://idp/token"}, []string{"issuerURL or tokenURL"}},
		{"no issuerURL nor tokenURL", validIssuer, map[string]any{"spec.oauth2.issuerURL": nil}, []string{"issuerURL or tokenURL"}},
		{"issuerURL not http", validIssuer, map[string]any{"spec.oauth2.issuerURL": "ftp://idp"}, []string{"spec.oauth2.issuerURL"}},
		{"missing clientID", validIssuer, map[string]any{"spec.oauth2.clientID": nil}, []string{"spec.oauth2.clientID"}},
		{"unknown clientAuth", validIssuer, map[string]any{"spec.oauth2.clientAuth": "client_secret_jwt"}, []string{"spec.oauth2.clientAuth"}},
		{"private_key_jwt without key", validIssuer, map[string]any{"spec.oauth2.clientAuth": "private_key_jwt"}, []string{"privateKeySecretRef"}},
		{"client secret auth without secret", validIssuer, map[string]any{"spec.oauth2.clientSecretRef": nil}, []string{"clientSecretRef"}},
		{"negative default lifetime", validIssuer, map[string]any{"spec.oauth2.defaultTokenLifetime": "-5m"}, []string{"defaultTokenLifetime"}},
		{"folio without tenant", validIssuer, map[string]any{"spec.oauth2": nil, "spec.folio": map[string]any{"url": "https://folio"}}, []string{"spec.folio.tenant"}},
		{"inline and Secret CA bundle", validIssuer, map[string]any{"spec.caBundle": "Y2E=", "spec.caBundleSecretRef": map[string]any{"name": "ca"}}, []string{"caBundle or caBundleSecretRef"}},
		{"CA bundle not base64", validIssuer, map[string]any{"spec.caBundle": "not base64!"}, []string{"spec.caBundle"}},
		{"insecureAllowPlainHTTP not a boolean", validIssuer, map[string]any{"spec.insecureAllowPlainHTTP": "yes"}, []string{"spec.insecureAllowPlainHTTP"}},
		{"too many endpoint hosts", validIssuer, map[string]any{"spec.oauth2.endpointHosts": manyHosts(17)}, []string{"spec.oauth2.endpointHosts"}},
		{"cluster issuer with both", validClusterIssuer, map[string]any{"spec.folio": map[string]any{"url": "https://f", "tenant": "t"}}, []string{"oauth2 or folio"}},
		{"cluster issuer open by omission", validClusterIssuer, map[string]any{"spec.allowed": nil}, []string{"spec.allowed"}},
		{"cluster issuer without namespaces", validClusterIssuer, map[string]any{"spec.allowed.namespaces": nil}, []string{"spec.allowed", "namespaces or namespaceSelector"}},
		{"cluster issuer without grants", validClusterIssuer, map[string]any{"spec.allowed.grants": []any{}}, []string{"spec.allowed.grants"}},
		{"cluster issuer with unknown grant", validClusterIssuer, map[string]any{"spec.allowed.grants": []any{"Implicit"}}, []string{"spec.allowed.grants"}},
		{"unknown issuerRef kind", validJob, map[string]any{"spec.issuerRef.kind": "Issuer"}, []string{"spec.issuerRef.kind"}},
		{"missing issuerRef name", validJob, map[string]any{"spec.issuerRef.name": nil}, []string{"spec.issuerRef.name"}},
		{"unknown grant", validJob, map[string]any{"spec.credentials.grant": "Implicit"}, []string{"spec.credentials.grant"}},
		{"Password without its Secret", validJob, map[string]any{"spec.credentials.grant": "Password"}, []string{"spec.credentials", "password is required"}},
		{"TokenExchange without its Secret", validJob, map[string]any{"spec.credentials.grant": "TokenExchange"}, []string{"spec.credentials", "tokenExchange is required"}},
		{"RefreshToken without its Secret", validJob, map[string]any{"spec.credentials.grant": "RefreshToken"}, []string{"spec.credentials", "refreshToken is required"}},
		{"password on another grant", validJob, map[string]any{"spec.credentials.password": map[string]any{"secretRef": map[string]any{"name": "p"}}}, []string{"spec.credentials", "password is required for, and only allowed with"}},
		{"fraction of 1", validJob, map[string]any{"spec.rotation.fraction": "1.0"}, []string{"spec.rotation.fraction"}},
		{"fraction of 0", validJob, map[string]any{"spec.rotation.fraction": "0.0"}, []string{"spec.rotation.fraction"}},
		{"fraction not a number", validJob, map[string]any{"spec.rotation.fraction": "70%"}, []string{"spec.rotation.fraction"}},
		{"jitter too large", validJob, map[string]any{"spec.rotation.jitter": "0.9"}, []string{"spec.rotation.jitter"}},
		{"zero propagation budget", validJob, map[string]any{"spec.rotation.propagationBudget": "0s"}, []string{"spec.rotation.propagationBudget"}},
		{"negative maxLifetime", validJob, map[string]any{"spec.rotation.maxLifetime": "-1h"}, []string{"spec.rotation.maxLifetime"}},
		{"relative tokenMountPath", validJob, map[string]any{"spec.tokenMountPath": "tokens"}, []string{"spec.tokenMountPath"}},
		{"template declares the token volume", validJob, map[string]any{podSpec + "volumes": []any{map[string]any{"name": "jobtoken", "emptyDir": map[string]any{}}}}, []string{"volumes", "reserved"}},
		{"template without containers", validJob, map[string]any{podSpec + "containers": nil}, []string{"containers"}},
	}
	if len(cases) < 15 {
		t.Fatalf("the admission table must hold at least 15 cases, has %d", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := set(t, tc.base, tc.edits)
			obj.SetName(fmt.Sprintf("case-%d", i))
			if obj.GetKind() != "ClusterTokenIssuer" {
				obj.SetNamespace(ns)
			}
			err := env.Client.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("accepted, want refused naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message does not name %q:\n%v", w, err)
				}
			}
		})
	}
	// The valid bases themselves are accepted, so each refusal above is due to its edit.
	for _, base := range []string{validJob, validIssuer, validClusterIssuer} {
		obj := fromYAML(t, base)
		if obj.GetKind() != "ClusterTokenIssuer" {
			obj.SetNamespace(ns)
		} else {
			obj.SetName("valid-" + ns)
		}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("valid base refused: %v", err)
		}
	}
}

func TestKubectl(t *testing.T) {
	user, err := env.AddUser(envtest.User{Name: "kubectl-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	root, _ := testenv.RepoRoot()
	kubectl := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, env.KubectlPath, append([]string{"--kubeconfig", kcPath, "-n", ns}, args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	out := kubectl("apply", "-k", "config/samples/")
	// The cluster-scoped sample may already exist from TestSamplesAreAccepted.
	if got := strings.Count(out, " created") + strings.Count(out, " configured"); got < 6 {
		t.Errorf("kubectl apply created %d objects, want 6:\n%s", got, out)
	}
	out = kubectl("get", "importjobs")
	for _, col := range []string{"NAME", "PHASE", "READY", "ROTATIONS", "EXPIRES", "AGE", "import-password"} {
		if !strings.Contains(out, col) {
			t.Errorf("kubectl get importjobs lacks %q:\n%s", col, out)
		}
	}
	out = kubectl("get", "jobtoken")
	if !strings.Contains(out, "tokenissuer.jobtoken.dev/keycloak") || !strings.Contains(out, "importjob.jobtoken.dev/import-refresh-token") {
		t.Errorf("the jobtoken category does not list issuers and jobs:\n%s", out)
	}
	out = kubectl("get", "ti")
	if !strings.Contains(out, "READY") {
		t.Errorf("kubectl get ti lacks the Ready column:\n%s", out)
	}
	// make install: the CRD kustomization applies (server-side: the ImportJob CRD embeds
	// the pod spec and is too large for client-side apply's annotation).
	out = kubectl("apply", "--server-side", "--force-conflicts", "-k", "config/crd")
	if strings.Count(out, "customresourcedefinition.apiextensions.k8s.io/") != 3 {
		t.Errorf("kubectl apply --server-side -k config/crd did not apply the 3 CRDs:\n%s", out)
	}
	// make deploy: config/default renders the manager with leader election and RBAC.
	out = kubectl("kustomize", "config/default")
	for _, want := range []string{"kind: Deployment", "--leader-elect", "name: jobtoken-manager-role", "namespace: jobtoken-system", "kind: CustomResourceDefinition", "POD_NAMESPACE"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl kustomize config/default lacks %q", want)
		}
	}
	out = kubectl("kustomize", "config/prometheus")
	if !strings.Contains(out, "kind: ServiceMonitor") {
		t.Errorf("config/prometheus does not render a ServiceMonitor:\n%s", out)
	}
	out = kubectl("explain", "importjob.spec.rotation")
	for _, want := range []string{"fraction", "propagationBudget", "maxLifetime", "nudgePods", "kubelet sync"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain importjob.spec.rotation lacks %q:\n%s", want, out)
		}
	}
}

// TestImmutableFieldsAreRefused updates a created ImportJob: the issuer and the grant are
// bound to the job for its life, while the rest of the spec stays editable.
func TestImmutableFieldsAreRefused(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name  string
		edits map[string]any
		want  []string
	}{
		{"issuerRef name", map[string]any{"spec.issuerRef.name": "tenant-issuer"}, []string{"spec.issuerRef", "immutable"}},
		{"issuerRef kind", map[string]any{"spec.issuerRef.kind": "ClusterTokenIssuer"}, []string{"spec.issuerRef", "immutable"}},
		{"credentials grant", map[string]any{"spec.credentials.grant": "Password", "spec.credentials.password": map[string]any{"secretRef": map[string]any{"name": "p"}}}, []string{"spec.credentials", "immutable"}},
		{"credentials scopes", map[string]any{"spec.credentials.scopes": []any{"admin"}}, []string{"spec.credentials", "immutable"}},
		{"credentials audience", map[string]any{"spec.credentials.audience": []any{"https://elsewhere"}}, []string{"spec.credentials", "immutable"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			obj := fromYAML(t, validJob)
			obj.SetName(fmt.Sprintf("update-%d", i))
			obj.SetNamespace(ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("valid base refused: %v", err)
			}
			for path, value := range tc.edits {
				if err := unstructured.SetNestedField(obj.Object, value, strings.Split(path, ".")...); err != nil {
					t.Fatalf("set %s: %v", path, err)
				}
			}
			err := env.Client.Update(ctx, obj)
			if err == nil {
				t.Fatalf("update accepted, want refused naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message does not name %q:\n%v", w, err)
				}
			}
		})
	}
	// The rest of the spec stays editable, so each refusal above is due to its field.
	obj := fromYAML(t, validJob)
	obj.SetNamespace(ns)
	ctx := context.Background()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatalf("valid base refused: %v", err)
	}
	if err := unstructured.SetNestedField(obj.Object, "0.5", "spec", "rotation", "fraction"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx, obj); err != nil {
		t.Errorf("an update of spec.rotation was refused: %v", err)
	}
}
