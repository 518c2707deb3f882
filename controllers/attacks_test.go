//go:build integration

package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

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

// A tenant who may create ImportJobs and TokenIssuers in its namespace, but holds no
// other right there, tries each way of steering the operator into doing for it what it
// may not do itself, with the manager running on its shipped RBAC and an issuer of the
// attacker's on loopback. Each attempt is refused at admission naming the missing
// permission; afterwards the attacker's server has received nothing of the victim's and
// no Secret of the namespace has changed.
func TestTenantAttacksAreRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
	h.startManager(managerOptions{})
	attacker := newRecordingIssuer(t)

	// The victim's objects, made by the namespace's administrator: a running job with a
	// refresh chain, the system user's password, a handed-over refresh token.
	victim := h.runningJob("victim", jobtokenv1alpha1.GrantPassword)
	vs, err := h.vaultSecret(victim)
	h.must(err)
	refresh := string(vs.Data[tokenchain.KeyRefreshToken])
	if refresh == "" {
		t.Fatal("no refresh token in the stored chain: the test would prove nothing")
	}
	_, handed := passwordGrant(t, h)
	h.must(env.Client.Create(h.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "handover"},
		Data:       map[string][]byte{"refresh_token": []byte(handed)},
	}))
	// The attacker's own client Secret, which it may read, for its own issuer.
	h.must(env.Client.Create(h.ctx, testenv.ClientSecret(h.ns, "attacker-client", "attacker-secret")))
	before := namespaceSecrets(t, h)

	cluster := &jobtokenv1alpha1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-" + h.ns},
		Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
			TokenIssuerSpec: testenv.DevIssuerSpec(h.issuer.URL(), clientID, "cluster-client"),
			Allowed:         jobtokenv1alpha1.ClusterIssuerAllowed{NamespaceSelector: &metav1.LabelSelector{}, Grants: []jobtokenv1alpha1.GrantType{jobtokenv1alpha1.GrantClientCredentials}},
		},
	}
	h.must(env.Client.Create(h.ctx, cluster))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cluster) })

	mallory, err := env.Tenant(h.ctx, h.ns, "mallory", testenv.Grants{
		ClusterRoles: []string{"jobtoken-importjob-editor-role", "jobtoken-tokenissuer-editor-role"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"attacker-client", "handover"}},
		},
	})
	h.must(err)
	// With Job creation too: the attacks on Secrets must fail for the Secret, not the Job.
	malloryWithJobs, err := env.Tenant(h.ctx, h.ns, "mallory-jobs", testenv.Grants{
		ClusterRoles: []string{"jobtoken-importjob-editor-role", "jobtoken-tokenissuer-editor-role"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"attacker-client", "handover"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}},
		},
	})
	h.must(err)
	// The attacker's issuer itself is admitted: the tenant may read its client Secret.
	evil := &jobtokenv1alpha1.TokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "evil"},
		Spec: jobtokenv1alpha1.TokenIssuerSpec{InsecureAllowPlainHTTP: true, OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
			IssuerURL: attacker.srv.URL, ClientID: clientID, ClientAuth: jobtokenv1alpha1.ClientAuthSecretPost,
			ClientSecretRef: &jobtokenv1alpha1.SecretKeySelector{Name: "attacker-client"},
		}},
	}
	h.must(malloryWithJobs.Create(h.ctx, evil))

	onEvil := func(name string, grant jobtokenv1alpha1.GrantType) *jobtokenv1alpha1.ImportJob {
		job := h.importJob(name, grant)
		job.Spec.IssuerRef.Name = evil.Name
		return job
	}
	passwordJob := onEvil("steal-password", jobtokenv1alpha1.GrantPassword)
	handoverJob := onEvil("empty-handover", jobtokenv1alpha1.GrantRefreshToken)
	handoverJob.Spec.Credentials.RefreshToken = &jobtokenv1alpha1.RefreshTokenGrant{SecretRef: jobtokenv1alpha1.SecretKeySelector{Name: "handover"}}
	clusterJob := h.importJob("borrow-cluster-client", jobtokenv1alpha1.GrantClientCredentials)
	clusterJob.Spec.IssuerRef = testenv.OnClusterTokenIssuer(cluster.Name)
	stealClient := &jobtokenv1alpha1.TokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "steal-client"},
		Spec: jobtokenv1alpha1.TokenIssuerSpec{InsecureAllowPlainHTTP: true, OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
			IssuerURL: attacker.srv.URL, ClientID: clientID, ClientAuth: jobtokenv1alpha1.ClientAuthSecretPost,
			ClientSecretRef: &jobtokenv1alpha1.SecretKeySelector{Name: "client"},
		}},
	}
	attempts := []struct {
		name string
		as   client.Client
		obj  client.Object
		want string
	}{
		{"run pods without the right to create Jobs", mallory, onEvil("pods", jobtokenv1alpha1.GrantClientCredentials), "create batch/jobs"},
		{"send a Password Secret it cannot read to its own issuer", malloryWithJobs, passwordJob, "get secrets user"},
		{"have the operator empty a Secret it cannot update", malloryWithJobs, handoverJob, "update secrets handover"},
		{"use a ClusterTokenIssuer it was not granted", malloryWithJobs, clusterJob, "use clustertokenissuers.jobtoken.dev " + cluster.Name},
		{"point its issuer at the namespace's client Secret", malloryWithJobs, stealClient, "get secrets client"},
	}
	for _, a := range attempts {
		err := a.as.Create(h.ctx, a.obj)
		if err == nil {
			t.Errorf("%s: admitted", a.name)
			continue
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "lacks permission: "+a.want) {
			t.Errorf("%s: refused without naming the permission %q: %v", a.name, a.want, err)
		}
	}

	// Moving the running victim to the attacker's issuer, then asking for a rotation.
	j := &jobtokenv1alpha1.ImportJob{}
	h.must(malloryWithJobs.Get(h.ctx, client.ObjectKeyFromObject(victim), j))
	j.Spec.IssuerRef.Name = evil.Name
	if err := malloryWithJobs.Update(h.ctx, j); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("moving a running job to another issuer: want refused as immutable, got %v", err)
	}
	rotations := h.getJob(victim.Name).Status.Rotations
	h.must(malloryWithJobs.Get(h.ctx, client.ObjectKeyFromObject(victim), j))
	patch := client.MergeFrom(j.DeepCopy())
	metav1.SetMetaDataAnnotation(&j.ObjectMeta, jobtokenv1alpha1.AnnotationRotateNow, "now")
	h.must(malloryWithJobs.Patch(h.ctx, j, patch))
	testenv.Eventually(h.t, 20*time.Second, "the requested rotation at the real issuer", func() bool {
		return h.getJob(victim.Name).Status.Rotations > rotations
	})

	secrets := []string{refresh, handed, userPassword, clientSecret}
	secrets = append(secrets, h.issuer.Issued().All()...)
	if got := attacker.received(secrets); len(got) > 0 {
		t.Errorf("the attacker's issuer received %d of the victim's secrets or tokens", len(got))
	}
	after := namespaceSecrets(t, h)
	for name, rv := range before {
		if after[name] != rv {
			t.Errorf("Secret %s changed (resourceVersion %s -> %q)", name, rv, after[name])
		}
	}
}

// namespaceSecrets maps the names of the harness namespace's Secrets that no job writes
// to their resourceVersions.
func namespaceSecrets(t *testing.T, h *harness) map[string]string {
	t.Helper()
	list := &corev1.SecretList{}
	h.must(env.Client.List(h.ctx, list, client.InNamespace(h.ns)))
	out := map[string]string{}
	for _, s := range list.Items {
		if s.Labels[jobtokenv1alpha1.LabelRole] != "" {
			continue
		}
		out[s.Name] = s.ResourceVersion
	}
	return out
}
