//go:build integration

package controllers

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// The OAuth client the TokenIssuer sample names, registered at the harness issuer.
const (
	sampleClientID     = "import-jobs"
	sampleClientSecret = "import-jobs-secret"
)

// A tenant holding the documented roles runs every ImportJob of config/samples end to
// end, with the admission policies in force and the manager on its shipped RBAC: the
// samples are the objects as shipped, with only the issuers' URLs pointed at the
// development issuer. The cluster administrator's part is the ClusterTokenIssuer (as
// shipped), the namespace label it selects, and the use role bound in the namespace.
func TestTenantRunsEverySample(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{
		AccessTokenTTL: 2 * time.Minute,
		Clients:        map[string]string{sampleClientID: sampleClientSecret},
	}})

	// The administrator's part.
	cti := &jobtokenv1alpha1.ClusterTokenIssuer{}
	h.must(testenv.ReadRepoYAML("config/samples/jobtoken_v1alpha1_clustertokenissuer_folio.yaml", cti))
	cti.Spec.FOLIO.URL = h.issuer.URL()
	cti.Spec.InsecureAllowPlainHTTP = true // the development issuer listens on loopback http
	h.must(env.Client.Create(h.ctx, cti))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	ns := &corev1.Namespace{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Name: h.ns}, ns))
	for k, v := range cti.Spec.Allowed.NamespaceSelector.MatchLabels {
		metav1.SetMetaDataLabel(&ns.ObjectMeta, k, v)
	}
	h.must(env.Client.Update(h.ctx, ns))
	useRole := &rbacv1.ClusterRole{}
	h.must(testenv.ReadRepoYAML("config/rbac/clustertokenissuer_use_role.yaml", useRole))
	if err := env.Client.Create(h.ctx, useRole); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	// The tenant: the built-in edit rules (aggregated into `edit` on a real cluster; envtest
	// runs no aggregation controller, so they are bound directly), the shipped editor roles
	// and the use role.
	tenant, err := env.Tenant(h.ctx, h.ns, "team-importer", testenv.Grants{ClusterRoles: []string{
		"system:aggregate-to-edit", "jobtoken-importjob-editor-role", "jobtoken-tokenissuer-editor-role", useRole.Name,
	}})
	h.must(err)
	h.startManager(managerOptions{leaderElection: true})

	// The tenant's Secrets: the OAuth client, the system user, and the submitter's
	// tokens handed over for the exchange and the refresh-token grants.
	subject, _ := tokenRequestAs(t, h, sampleClientID, sampleClientSecret, url.Values{"grant_type": {"password"}, "username": {userName}, "password": {userPassword}})
	_, offline := tokenRequestAs(t, h, sampleClientID, sampleClientSecret, url.Values{"grant_type": {"password"}, "username": {userName}, "password": {userPassword}})
	if subject == "" || offline == "" {
		t.Fatal("the issuer gave the submitter no tokens")
	}
	for name, data := range map[string]map[string]string{
		"import-jobs-client":      {"client-secret": sampleClientSecret},
		"import-system-user":      {"username": userName, "password": userPassword},
		"submitter-token":         {"token": subject},
		"submitter-offline-token": {"refresh_token": offline},
	} {
		h.must(tenant.Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}, StringData: data}))
	}
	issuer := &jobtokenv1alpha1.TokenIssuer{}
	h.must(testenv.ReadRepoYAML("config/samples/jobtoken_v1alpha1_tokenissuer.yaml", issuer))
	issuer.Namespace = h.ns
	issuer.Spec.OAuth2.IssuerURL = h.issuer.URL()
	issuer.Spec.InsecureAllowPlainHTTP = true
	h.must(tenant.Create(h.ctx, issuer))

	var jobs []*jobtokenv1alpha1.ImportJob
	for _, file := range []string{
		"jobtoken_v1alpha1_importjob_clientcredentials.yaml",
		"jobtoken_v1alpha1_importjob_password.yaml",
		"jobtoken_v1alpha1_importjob_tokenexchange.yaml",
		"jobtoken_v1alpha1_importjob_refreshtoken.yaml",
	} {
		job := &jobtokenv1alpha1.ImportJob{}
		h.must(testenv.ReadRepoYAML("config/samples/"+file, job))
		job.Namespace = h.ns
		if err := tenant.Create(h.ctx, job); err != nil {
			t.Fatalf("the tenant may not create %s: %v", file, err)
		}
		h.jobs = append(h.jobs, job.Name)
		jobs = append(jobs, job)
	}

	for _, job := range jobs {
		testenv.Eventually(h.t, 30*time.Second, job.Name+" running", func() bool { return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning })
		ws, err := h.workerSecret(job)
		h.must(err)
		if !resourceAccepts(t, h, string(ws.Data[jobtokenv1alpha1.KeyAccessToken])) {
			t.Errorf("%s: the workers' token is refused by the protected resource", job.Name)
		}
		// The tenant asks for a rotation the way the docs show: the annotation.
		j := &jobtokenv1alpha1.ImportJob{}
		h.must(tenant.Get(h.ctx, client.ObjectKeyFromObject(job), j))
		patch := client.MergeFrom(j.DeepCopy())
		metav1.SetMetaDataAnnotation(&j.ObjectMeta, jobtokenv1alpha1.AnnotationRotateNow, time.Now().String())
		h.must(tenant.Patch(h.ctx, j, patch))
	}
	for _, job := range jobs {
		testenv.Eventually(h.t, 30*time.Second, job.Name+" rotated on request", func() bool { return h.getJob(job.Name).Status.Rotations >= 1 })
		if j := h.getJob(job.Name); conditionTrue(j, jobtokenv1alpha1.ConditionStalled) || !conditionTrue(j, jobtokenv1alpha1.ConditionReady) {
			t.Errorf("%s is not Ready after its rotation: %+v", job.Name, j.Status.Conditions)
		}
		if !hasEvent(h.events(job.Name), EventRotated) {
			t.Errorf("%s: no Rotated event for the rotation its tenant asked for: %v", job.Name, h.events(job.Name))
		}
	}
	// The tenant sees its jobs (the viewer part of the editor role), never the chains.
	list := &jobtokenv1alpha1.ImportJobList{}
	h.must(tenant.List(h.ctx, list, client.InNamespace(h.ns)))
	if len(list.Items) != len(jobs) {
		t.Errorf("the tenant lists %d ImportJobs, want %d", len(list.Items), len(jobs))
	}
	if err := tenant.List(h.ctx, &corev1.SecretList{}, client.InNamespace(vaultNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("the tenant may list the stored chains in %s (err %v)", vaultNamespace, err)
	}

	// The pair each job holds at its end: what the revocation must kill.
	var held []string
	for _, job := range jobs {
		ws, err := h.workerSecret(job)
		h.must(err)
		vs, err := h.vaultSecret(job)
		h.must(err)
		held = append(held, string(ws.Data[jobtokenv1alpha1.KeyAccessToken]), string(vs.Data[tokenchain.KeyRefreshToken]))
	}
	for _, tok := range held {
		if tok != "" && !h.issuer.Active(tok) {
			t.Fatal("a held token is inactive before the end: the revocation check would prove nothing")
		}
	}
	for _, job := range jobs {
		h.markJob(job.Name, batchv1.JobComplete)
	}
	for _, job := range jobs {
		testenv.Eventually(h.t, 30*time.Second, job.Name+" succeeded and revoked", func() bool {
			j := h.getJob(job.Name)
			return j.Status.Phase == jobtokenv1alpha1.PhaseSucceeded && conditionTrue(j, jobtokenv1alpha1.ConditionRevoked)
		})
		if _, err := h.workerSecret(job); !apierrors.IsNotFound(err) {
			t.Errorf("%s: the worker Secret is still there after the end (err %v)", job.Name, err)
		}
		if _, err := h.vaultSecret(job); !apierrors.IsNotFound(err) {
			t.Errorf("%s: the stored chain is still there after the end (err %v)", job.Name, err)
		}
	}
	for i, tok := range held {
		if tok != "" && h.issuer.Active(tok) {
			t.Errorf("%s: its %s is still active after the job ended", jobs[i/2].Name, []string{"access token", "refresh token"}[i%2])
		}
	}
	if strings.Contains(h.logs.String(), "forbidden") {
		t.Errorf("the manager was refused something by its shipped RBAC:\n%s", grepLines(h.logs.String(), "forbidden"))
	}
	h.assertNoReuse()
}

// grepLines returns the lines of text that contain needle.
func grepLines(text, needle string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
