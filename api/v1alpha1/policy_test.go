//go:build integration

package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

// The policy tests install config/ the way `make install` does and then act as tenants
// whose only rights are the Roles each case creates for them.

var (
	policyOnce sync.Once
	policyErr  error
)

// rendered decodes the objects a kustomization renders.
func rendered(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := env.Render(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// installPolicy applies config/install as `make install` does, once per test binary, and
// waits until the API server enforces the policies: a policy is only enforced once the
// API server's policy cache has loaded it and its binding.
func installPolicy(t *testing.T) {
	t.Helper()
	policyOnce.Do(func() { policyErr = doInstallPolicy(t) })
	if policyErr != nil {
		t.Fatal(policyErr)
	}
}

func doInstallPolicy(t *testing.T) error {
	t.Helper()
	if out, err := env.Kubectl(context.Background(), nil, "apply", "--server-side", "--force-conflicts", "-k", "config/install"); err != nil {
		return err
	} else if got := strings.Count(out, "validatingadmissionpolic"); got != 4 {
		return fmt.Errorf("kubectl apply -k config/install applied %d policy objects, want 4:\n%s", got, out)
	}
	ns := newNamespace(t)
	user := tenant(t, ns, "policy-probe", testenv.Grants{ClusterRoles: []string{"jobtoken-importjob-editor-role", "jobtoken-tokenissuer-editor-role"}})
	job := fromYAML(t, validJob)
	job.SetNamespace(ns)
	issuer := fromYAML(t, validIssuer)
	issuer.SetNamespace(ns)
	deadline := time.Now().Add(60 * time.Second)
	for {
		jobErr := user.Create(context.Background(), job.DeepCopy(), client.DryRunAll)
		issuerErr := user.Create(context.Background(), issuer.DeepCopy(), client.DryRunAll)
		if refusedByPolicy(jobErr) && refusedByPolicy(issuerErr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the admission policies are not enforced 60s after install: ImportJob: %v; TokenIssuer: %v", jobErr, issuerErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func refusedByPolicy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "lacks permission")
}

var peopleRolesOnce sync.Once

// installPeopleRoles creates the people ClusterRoles exactly as config/default renders
// them. envtest runs no controller manager, so they are not aggregated into edit/view:
// tenants are bound to them directly.
func installPeopleRoles(t *testing.T) {
	t.Helper()
	peopleRolesOnce.Do(func() {
		for _, obj := range rendered(t, "config/default") {
			if obj.GetKind() != "ClusterRole" || !strings.HasSuffix(obj.GetName(), "-editor-role") && !strings.HasSuffix(obj.GetName(), "-viewer-role") {
				continue
			}
			if err := env.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create %s: %v", obj.GetName(), err)
			}
		}
	})
}

// tenant returns a client that acts as user name, holding only the given rights in ns.
func tenant(t *testing.T, ns, name string, g testenv.Grants) client.Client {
	t.Helper()
	installPeopleRoles(t)
	c, err := env.Tenant(context.Background(), ns, name, g)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jobsCreate() rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}}
}

func secrets(verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: verbs, ResourceNames: names}
}

func sample(t *testing.T, file, ns string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := testenv.ReadRepoYAML("config/samples/"+file, &obj.Object); err != nil {
		t.Fatal(err)
	}
	if obj.GetKind() != "ClusterTokenIssuer" {
		obj.SetNamespace(ns)
	}
	return obj
}

func ensureClusterIssuerSample(t *testing.T) {
	t.Helper()
	obj := sample(t, "jobtoken_v1alpha1_clustertokenissuer_folio.yaml", "")
	if err := env.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func wantRefused(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refused naming %q", want)
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("refused with %v, want Forbidden", apierrors.ReasonForError(err))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message does not name %q:\n%v", w, err)
		}
	}
}

const (
	importJobEditor   = "jobtoken-importjob-editor-role"
	tokenIssuerEditor = "jobtoken-tokenissuer-editor-role"
)

func TestPolicyImportJobNeedsJobCreate(t *testing.T) {
	installPolicy(t)
	ns := newNamespace(t)
	user := tenant(t, ns, "no-jobs", testenv.Grants{ClusterRoles: []string{importJobEditor}})
	err := user.Create(context.Background(), sample(t, "jobtoken_v1alpha1_importjob_clientcredentials.yaml", ns))
	wantRefused(t, err, "no-jobs", "create batch/jobs in namespace "+ns)
}

func TestPolicyImportJobNeedsPasswordSecret(t *testing.T) {
	installPolicy(t)
	ensureClusterIssuerSample(t)
	ns := newNamespace(t)
	use := useTemplate(t)
	user := tenant(t, ns, "no-password-secret", testenv.Grants{
		ClusterRoles: []string{importJobEditor, use},
		// get on another Secret does not stand in for the one the grant names.
		Rules: []rbacv1.PolicyRule{jobsCreate(), secrets([]string{"get"}, "other")},
	})
	err := user.Create(context.Background(), sample(t, "jobtoken_v1alpha1_importjob_password.yaml", ns))
	wantRefused(t, err, "get secrets import-system-user in namespace "+ns)
}

func TestPolicyRemoveAfterRedeemNeedsUpdate(t *testing.T) {
	installPolicy(t)
	for _, tc := range []struct{ file, secret string }{
		{"jobtoken_v1alpha1_importjob_tokenexchange.yaml", "submitter-token"},
		{"jobtoken_v1alpha1_importjob_refreshtoken.yaml", "submitter-offline-token"},
	} {
		t.Run(tc.secret, func(t *testing.T) {
			ns := newNamespace(t)
			user := tenant(t, ns, "read-only-"+tc.secret, testenv.Grants{
				ClusterRoles: []string{importJobEditor},
				Rules:        []rbacv1.PolicyRule{jobsCreate(), secrets([]string{"get"}, tc.secret)},
			})
			// removeAfterRedeem defaults to true: the operator would empty the Secret.
			err := user.Create(context.Background(), sample(t, tc.file, ns))
			wantRefused(t, err, "update secrets "+tc.secret+" in namespace "+ns)
			// Without removeAfterRedeem, reading is all the operator does with it.
			keep := sample(t, tc.file, ns)
			grant := "tokenExchange"
			if strings.Contains(tc.file, "refreshtoken") {
				grant = "refreshToken"
			}
			if err := unstructured.SetNestedField(keep.Object, false, "spec", "credentials", grant, "removeAfterRedeem"); err != nil {
				t.Fatal(err)
			}
			if err := user.Create(context.Background(), keep); err != nil {
				t.Errorf("removeAfterRedeem false with get on the Secret refused: %v", err)
			}
		})
	}
}

// useTemplate installs the documented use ClusterRole template as shipped.
func useTemplate(t *testing.T) string {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	if err := testenv.ReadRepoYAML("config/rbac/clustertokenissuer_use_role.yaml", role); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(context.Background(), role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return role.Name
}

func TestPolicyClusterTokenIssuerNeedsUse(t *testing.T) {
	installPolicy(t)
	ensureClusterIssuerSample(t)
	ns := newNamespace(t)
	rights := []rbacv1.PolicyRule{jobsCreate(), secrets([]string{"get"}, "import-system-user")}
	without := tenant(t, ns, "no-use", testenv.Grants{ClusterRoles: []string{importJobEditor}, Rules: rights})
	err := without.Create(context.Background(), sample(t, "jobtoken_v1alpha1_importjob_password.yaml", ns))
	wantRefused(t, err, "use clustertokenissuers.jobtoken.dev folio-diku in namespace "+ns)

	// The template bound in this namespace grants use of folio-diku here.
	with := tenant(t, ns, "with-use", testenv.Grants{ClusterRoles: []string{importJobEditor, useTemplate(t)}, Rules: rights})
	if err := with.Create(context.Background(), sample(t, "jobtoken_v1alpha1_importjob_password.yaml", ns)); err != nil {
		t.Fatalf("tenant with use, jobs create and get on the Secret refused: %v", err)
	}
	// use of folio-diku is no use of another ClusterTokenIssuer.
	other := sample(t, "jobtoken_v1alpha1_importjob_password.yaml", ns)
	other.SetName("other-issuer")
	if err := unstructured.SetNestedField(other.Object, "folio-other", "spec", "issuerRef", "name"); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, with.Create(context.Background(), other), "use clustertokenissuers.jobtoken.dev folio-other")
}

func TestPolicyTokenIssuerNeedsItsSecrets(t *testing.T) {
	installPolicy(t)
	ns := newNamespace(t)
	user := tenant(t, ns, "issuer-no-secret", testenv.Grants{ClusterRoles: []string{tokenIssuerEditor}})
	err := user.Create(context.Background(), sample(t, "jobtoken_v1alpha1_tokenissuer.yaml", ns))
	wantRefused(t, err, "get secrets import-jobs-client in namespace "+ns)

	pkj := fromYAML(t, validIssuer)
	pkj.SetNamespace(ns)
	pkj.SetName("pkj")
	if err := unstructured.SetNestedField(pkj.Object, map[string]any{
		"issuerURL": "https://idp.example.com", "clientID": "jobs", "clientAuth": "private_key_jwt",
		"privateKeySecretRef": map[string]any{"name": "jobs-key"},
	}, "spec", "oauth2"); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, user.Create(context.Background(), pkj), "get secrets jobs-key")

	// A CA bundle Secret is a Secret the operator reads for the tenant too.
	ca := fromYAML(t, validIssuer)
	ca.SetNamespace(ns)
	ca.SetName("private-ca")
	if err := unstructured.SetNestedField(ca.Object, map[string]any{"name": "their-ca"}, "spec", "caBundleSecretRef"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(ca.Object, map[string]any{"name": "their-client"}, "spec", "oauth2", "clientSecretRef"); err != nil {
		t.Fatal(err)
	}
	withClient := tenant(t, ns, "issuer-client-secret-only", testenv.Grants{ClusterRoles: []string{tokenIssuerEditor},
		Rules: []rbacv1.PolicyRule{secrets([]string{"get"}, "their-client")}})
	wantRefused(t, withClient.Create(context.Background(), ca), "get secrets their-ca")

	// Redirecting an existing issuer (whose Secret the admin may read) to another URL is a
	// spec change: it needs the same right, or the operator would send the Secret there.
	existing := sample(t, "jobtoken_v1alpha1_tokenissuer.yaml", ns)
	if err := env.Client.Create(context.Background(), existing); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(existing.Object, "https://attacker.example.com", "spec", "oauth2", "issuerURL"); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, user.Update(context.Background(), existing), "get secrets import-jobs-client")
}

func TestPolicyEditorRolesCreateTheSamples(t *testing.T) {
	installPolicy(t)
	ensureClusterIssuerSample(t)
	ns := newNamespace(t)
	user := tenant(t, ns, "editor", testenv.Grants{
		ClusterRoles: []string{importJobEditor, tokenIssuerEditor, useTemplate(t)},
		Rules: []rbacv1.PolicyRule{
			jobsCreate(),
			secrets([]string{"get"}, "import-jobs-client", "import-system-user"),
			secrets([]string{"get", "update"}, "submitter-token", "submitter-offline-token"),
		},
	})
	for _, file := range []string{
		"jobtoken_v1alpha1_tokenissuer.yaml",
		"jobtoken_v1alpha1_importjob_clientcredentials.yaml",
		"jobtoken_v1alpha1_importjob_password.yaml",
		"jobtoken_v1alpha1_importjob_tokenexchange.yaml",
		"jobtoken_v1alpha1_importjob_refreshtoken.yaml",
	} {
		if err := user.Create(context.Background(), sample(t, file, ns)); err != nil {
			t.Errorf("%s refused: %v", file, err)
		}
	}
}

// The operator never creates ImportJobs or TokenIssuers; it writes their status and
// metadata (finalizers), which must pass whatever rights it holds elsewhere.
func TestPolicyLeavesStatusAndMetadataWrites(t *testing.T) {
	installPolicy(t)
	ns := newNamespace(t)
	job := sample(t, "jobtoken_v1alpha1_importjob_tokenexchange.yaml", ns)
	issuer := sample(t, "jobtoken_v1alpha1_tokenissuer.yaml", ns)
	for _, obj := range []*unstructured.Unstructured{job, issuer} {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	writer := tenant(t, ns, "status-writer", testenv.Grants{Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"jobtoken.dev"},
		Resources: []string{"importjobs", "importjobs/status", "tokenissuers", "tokenissuers/status"},
		Verbs:     []string{"get", "update", "patch"},
	}}})
	for _, obj := range []*unstructured.Unstructured{job, issuer} {
		if err := unstructured.SetNestedField(obj.Object, "Pending", "status", "phase"); err != nil {
			t.Fatal(err)
		}
		if err := writer.Status().Update(context.Background(), obj); err != nil {
			t.Errorf("%s status update refused: %v", obj.GetKind(), err)
			continue
		}
		obj.SetFinalizers([]string{"jobtoken.dev/test"})
		if err := writer.Update(context.Background(), obj); err != nil {
			t.Errorf("%s finalizer update refused: %v", obj.GetKind(), err)
		}
	}
	// The same writer changing the spec is checked like a create.
	if err := unstructured.SetNestedField(job.Object, "45s", "spec", "rotation", "propagationBudget"); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, writer.Update(context.Background(), job), "create batch/jobs")
	for _, obj := range []*unstructured.Unstructured{job, issuer} {
		obj.SetFinalizers(nil)
		_ = env.Client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
	}
}

// make deploy renders the same policy objects, under the same names, as make install.
func TestPolicyShippedByDefault(t *testing.T) {
	installPolicy(t)
	var names []string
	var policyDocs []any
	for _, obj := range rendered(t, "config/default") {
		if !strings.HasPrefix(obj.GetKind(), "ValidatingAdmissionPolicy") {
			continue
		}
		names = append(names, obj.GetKind()+"/"+obj.GetName())
		if obj.GetKind() == "ValidatingAdmissionPolicyBinding" {
			policy, _, _ := unstructured.NestedString(obj.Object, "spec", "policyName")
			if policy != obj.GetName() {
				t.Errorf("binding %s names policy %q", obj.GetName(), policy)
			}
		}
		policyDocs = append(policyDocs, obj.Object)
	}
	want := []string{
		"ValidatingAdmissionPolicy/jobtoken-importjob-authorization",
		"ValidatingAdmissionPolicy/jobtoken-tokenissuer-authorization",
		"ValidatingAdmissionPolicyBinding/jobtoken-importjob-authorization",
		"ValidatingAdmissionPolicyBinding/jobtoken-tokenissuer-authorization",
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("config/default renders %v, want %v", names, want)
	}
	// Applying them as config/default renders them updates the installed objects.
	data, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": policyDocs})
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(context.Background(), data, "apply", "--server-side", "--force-conflicts", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "serverside-applied"); got != 4 {
		t.Errorf("applied %d of 4 policy objects:\n%s", got, out)
	}
	var list unstructured.UnstructuredList
	list.SetAPIVersion("admissionregistration.k8s.io/v1")
	list.SetKind("ValidatingAdmissionPolicyList")
	if err := env.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Errorf("%d policies installed after install and deploy, want 2", len(list.Items))
	}
}
