//go:build integration

package controllers

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// The tenancy tests treat what a tenant can write in its namespace as adversarial: the
// issuer an ImportJob names, and the names of objects the operator creates for it.

// recordingIssuer is a second development issuer that keeps every form value and
// credential header it was sent, so a test can tell whether a token reached it.
type recordingIssuer struct {
	srv *httptest.Server
	mu  sync.Mutex
	// seen holds every form value and header value of every request.
	seen []string
}

func newRecordingIssuer(t *testing.T) *recordingIssuer {
	t.Helper()
	dev, err := devissuer.New(devissuer.Config{
		AccessTokenTTL: 10 * time.Minute,
		Clients:        map[string]string{clientID: clientSecret},
		Users:          map[string]string{userName: userPassword},
	})
	if err != nil {
		t.Fatal(err)
	}
	ri := &recordingIssuer{}
	ri.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		ri.mu.Lock()
		ri.seen = append(ri.seen, string(body), r.Header.Get("Authorization"), r.Header.Get("Cookie"))
		for _, vs := range form {
			ri.seen = append(ri.seen, vs...)
		}
		ri.mu.Unlock()
		dev.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ri.srv.Close)
	return ri
}

// received reports which of the tokens the issuer was sent.
func (ri *recordingIssuer) received(tokens []string) []string {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	var out []string
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		for _, s := range ri.seen {
			if strings.Contains(s, tok) {
				out = append(out, "a token of the first issuer")
				break
			}
		}
	}
	return out
}

func (h *harness) requestRotation(name string) {
	h.t.Helper()
	j := h.getJob(name)
	patch := client.MergeFrom(j.DeepCopy())
	if j.Annotations == nil {
		j.Annotations = map[string]string{}
	}
	j.Annotations[jobtokenv1alpha1.AnnotationRotateNow] = time.Now().String()
	h.must(env.Client.Patch(h.ctx, j, patch))
}

func stalledWith(job *jobtokenv1alpha1.ImportJob, reason string) *metav1.Condition {
	c := meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason {
		return nil
	}
	return c
}

// The issuer a running job names is swapped for a server of someone else's: deleted and
// re-created under the same name (a new UID), or pointed at another URL by its owner.
// That server never receives the job's refresh token: not on a requested rotation, not
// as a revocation when the job is deleted.
func TestIssuerSwappedGetsNoToken(t *testing.T) {
	cases := []struct {
		name string
		// swap points the job's issuer at other and returns words the Stalled message
		// must hold.
		swap func(h *harness, first *jobtokenv1alpha1.TokenIssuer, other *recordingIssuer) []string
	}{
		{"re-created under its name", func(h *harness, first *jobtokenv1alpha1.TokenIssuer, other *recordingIssuer) []string {
			h.must(env.Client.Delete(h.ctx, first))
			testenv.Eventually(h.t, 10*time.Second, "the first issuer gone", func() bool {
				return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(first), &jobtokenv1alpha1.TokenIssuer{}))
			})
			second := &jobtokenv1alpha1.TokenIssuer{
				ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "dev"},
				Spec:       *first.Spec.DeepCopy(),
			}
			second.Spec.OAuth2.IssuerURL = other.srv.URL
			h.must(env.Client.Create(h.ctx, second))
			return []string{string(first.UID), string(second.UID)}
		}},
		{"pointed at another URL", func(h *harness, first *jobtokenv1alpha1.TokenIssuer, other *recordingIssuer) []string {
			patch := client.MergeFrom(first.DeepCopy())
			first.Spec.OAuth2.IssuerURL = other.srv.URL
			h.must(env.Client.Patch(h.ctx, first, patch))
			return []string{"points at", strings.TrimPrefix(other.srv.URL, "http://")}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
			h.startManager(managerOptions{})
			job := h.runningJob("bound", jobtokenv1alpha1.GrantPassword)
			vs, err := h.vaultSecret(job)
			h.must(err)
			chain := maps.Clone(vs.Data)
			if len(chain[tokenchain.KeyRefreshToken]) == 0 {
				t.Fatal("no refresh token in the vault: the test would prove nothing")
			}
			first := &jobtokenv1alpha1.TokenIssuer{}
			h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "dev"}, first))
			other := newRecordingIssuer(t)
			want := tc.swap(h, first, other)
			testenv.Eventually(h.t, 20*time.Second, "the swapped issuer ready", func() bool {
				ti := &jobtokenv1alpha1.TokenIssuer{}
				return env.Client.Get(h.ctx, client.ObjectKeyFromObject(first), ti) == nil &&
					ti.Spec.OAuth2.IssuerURL == other.srv.URL &&
					meta.IsStatusConditionTrue(ti.Status.Conditions, jobtokenv1alpha1.ConditionReady) &&
					meta.FindStatusCondition(ti.Status.Conditions, jobtokenv1alpha1.ConditionReady).ObservedGeneration == ti.Generation
			})

			h.requestRotation(job.Name)
			tokens := h.issuer.Issued().All()
			testenv.Eventually(h.t, 20*time.Second, "the job stalled or a token sent to the other server", func() bool {
				return stalledWith(h.getJob(job.Name), "IssuerChanged") != nil || len(other.received(tokens)) > 0
			})
			if got := other.received(tokens); len(got) > 0 {
				t.Fatalf("the other server received %d of the job's tokens after a rotation request", len(got))
			}
			c := stalledWith(h.getJob(job.Name), "IssuerChanged")
			for _, w := range want {
				if !strings.Contains(c.Message, w) {
					t.Errorf("the Stalled message does not name %q: %s", w, c.Message)
				}
			}
			if !hasEvent(h.events(job.Name), EventStalled) {
				t.Errorf("no Stalled event: %v", h.events(job.Name))
			}
			vs, err = h.vaultSecret(job)
			h.must(err)
			if !maps.EqualFunc(chain, vs.Data, bytes.Equal) {
				t.Errorf("the stored chain changed although the issuer was swapped")
			}

			h.must(env.Client.Delete(h.ctx, job))
			testenv.Eventually(h.t, 20*time.Second, "the ImportJob gone", func() bool {
				return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job), &jobtokenv1alpha1.ImportJob{}))
			})
			if got := other.received(h.issuer.Issued().All()); len(got) > 0 {
				t.Errorf("the other server received %d of the job's tokens at deletion", len(got))
			}
			if !hasEvent(h.events(job.Name), EventRevocationSkipped) {
				t.Errorf("no %s event: %v", EventRevocationSkipped, h.events(job.Name))
			}
		})
	}
}

// An ImportJob named so that its worker Secret is an existing Secret the operator did
// not create stalls naming it, and never writes, owns or deletes that Secret.
func TestWorkerSecretNameTaken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	theirs := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "squat" + workerSecretNameSuffix},
		Data:       map[string][]byte{"config": []byte("someone else's")},
	}
	h.must(env.Client.Create(h.ctx, theirs))
	job := h.importJob("squat", jobtokenv1alpha1.GrantPassword)
	h.must(env.Client.Create(h.ctx, job))

	unchanged := func(what string) {
		t.Helper()
		s := &corev1.Secret{}
		if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(theirs), s); err != nil {
			t.Fatalf("%s: the existing Secret: %v", what, err)
		}
		if !maps.EqualFunc(s.Data, theirs.Data, bytes.Equal) || len(s.OwnerReferences) != 0 || len(s.Labels) != 0 {
			t.Fatalf("%s: the existing Secret was taken over: keys %v, owners %v, labels %v", what, keysOf(s.Data), s.OwnerReferences, s.Labels)
		}
	}
	testenv.Eventually(h.t, 20*time.Second, "the job stalled or the Secret written", func() bool {
		s := &corev1.Secret{}
		return stalledWith(h.getJob(job.Name), "NameConflict") != nil ||
			(env.Client.Get(h.ctx, client.ObjectKeyFromObject(theirs), s) == nil && len(s.Data) != 1)
	})
	unchanged("while the job runs")
	c := stalledWith(h.getJob(job.Name), "NameConflict")
	if c == nil || !strings.Contains(c.Message, theirs.Name) {
		t.Fatalf("want Stalled/NameConflict naming Secret %s, got %+v", theirs.Name, h.getJob(job.Name).Status.Conditions)
	}

	h.must(env.Client.Delete(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "the ImportJob gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job), &jobtokenv1alpha1.ImportJob{}))
	})
	unchanged("after the job was deleted")
}

// An ImportJob named after an existing batch Job it does not control stalls naming it
// and leaves that Job alone.
func TestBatchJobNameTaken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	theirs := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "taken", Labels: map[string]string{"team": "other"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "theirs", Image: "busybox"}},
		}}},
	}
	h.must(env.Client.Create(h.ctx, theirs))
	job := h.importJob("taken", jobtokenv1alpha1.GrantPassword)
	h.must(env.Client.Create(h.ctx, job))

	testenv.Eventually(h.t, 20*time.Second, "the job stalled or running", func() bool {
		j := h.getJob(job.Name)
		return stalledWith(j, "NameConflict") != nil || j.Status.Phase == jobtokenv1alpha1.PhaseRunning
	})
	j := h.getJob(job.Name)
	c := stalledWith(j, "NameConflict")
	if c == nil || !strings.Contains(c.Message, "Job "+theirs.Name) {
		t.Fatalf("want Stalled/NameConflict naming Job %s, got phase %q, %+v", theirs.Name, j.Status.Phase, j.Status.Conditions)
	}
	if j.Status.JobName != "" {
		t.Errorf("status.jobName = %q: the Job was adopted", j.Status.JobName)
	}

	h.must(env.Client.Delete(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "the ImportJob gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job), &jobtokenv1alpha1.ImportJob{}))
	})
	got := &batchv1.Job{}
	h.must(env.Client.Get(h.ctx, client.ObjectKeyFromObject(theirs), got))
	if got.ResourceVersion != theirs.ResourceVersion || len(got.OwnerReferences) != 0 {
		t.Errorf("the existing Job was changed: resourceVersion %s -> %s, owners %v", theirs.ResourceVersion, got.ResourceVersion, got.OwnerReferences)
	}
}

// A ClusterTokenIssuer whose client secret reference names a job's stored chain (in the
// operator's namespace, where ClusterTokenIssuer Secrets live) never makes the operator
// send that refresh token anywhere: the issuer is not Ready, and a job using it waits.
func TestClusterIssuerCannotReadAChain(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
	h.startManager(managerOptions{})
	victim := h.runningJob("victim", jobtokenv1alpha1.GrantPassword)
	vs, err := h.vaultSecret(victim)
	h.must(err)
	refresh := string(vs.Data[tokenchain.KeyRefreshToken])
	if refresh == "" {
		t.Fatal("no refresh token in the vault: the test would prove nothing")
	}

	attacker := newRecordingIssuer(t)
	cti := &jobtokenv1alpha1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "steal-" + h.ns},
		Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
			TokenIssuerSpec: jobtokenv1alpha1.TokenIssuerSpec{InsecureAllowPlainHTTP: true, OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
				IssuerURL: attacker.srv.URL, ClientID: clientID, ClientAuth: jobtokenv1alpha1.ClientAuthSecretPost,
				ClientSecretRef: &jobtokenv1alpha1.SecretKeySelector{Name: vs.Name, Key: tokenchain.KeyRefreshToken},
			}},
			Allowed: allowNamespace(h.ns, jobtokenv1alpha1.GrantClientCredentials),
		},
	}
	h.must(env.Client.Create(h.ctx, cti))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	thief := h.importJob("thief", jobtokenv1alpha1.GrantClientCredentials)
	thief.Spec.IssuerRef = testenv.OnClusterTokenIssuer(cti.Name)
	h.must(env.Client.Create(h.ctx, thief))

	var msg string
	testenv.Eventually(h.t, 20*time.Second, "the cluster issuer refusing the chain Secret", func() bool {
		got := &jobtokenv1alpha1.ClusterTokenIssuer{}
		if env.Client.Get(h.ctx, client.ObjectKeyFromObject(cti), got) != nil {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Conditions, jobtokenv1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse {
			return false
		}
		msg = c.Message
		return strings.Contains(c.Message, vs.Name)
	})
	if !strings.Contains(msg, "stored token chain") {
		t.Errorf("Ready=False without saying why: %q", msg)
	}
	// Give a job on the issuer time to mint, had the issuer been usable.
	time.Sleep(3 * time.Second)
	if got := attacker.received([]string{refresh}); len(got) > 0 {
		t.Fatalf("the attacker's issuer received the victim's refresh token")
	}
	if j := h.getJob(thief.Name); j.Status.Phase == jobtokenv1alpha1.PhaseRunning {
		t.Errorf("a job on the refused issuer runs: phase %s", j.Status.Phase)
	}
	if !h.issuer.Active(refresh) {
		t.Errorf("the victim's chain is no longer active")
	}
}

// allowNamespace lets one namespace use a ClusterTokenIssuer with the given grants.
func allowNamespace(ns string, grants ...jobtokenv1alpha1.GrantType) jobtokenv1alpha1.ClusterIssuerAllowed {
	return jobtokenv1alpha1.ClusterIssuerAllowed{Namespaces: []string{ns}, Grants: grants}
}

// A ClusterTokenIssuer serves only the namespaces, grants and scopes its owner allowed:
// a job outside them stalls with IssuerNotAllowed and nothing of it reaches the issuer,
// while an allowed job on the same issuer runs.
func TestClusterIssuerServesOnlyWhatItAllows(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
	clientRef := "cti-client-" + h.ns
	h.must(env.Client.Create(h.ctx, testenv.ClientSecret(vaultNamespace, clientRef, clientSecret)))
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: vaultNamespace, Name: clientRef}})
	})
	cti := &jobtokenv1alpha1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-" + h.ns},
		Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
			TokenIssuerSpec: testenv.DevIssuerSpec(h.issuer.URL(), clientID, clientRef),
			Allowed:         allowNamespace(h.ns, jobtokenv1alpha1.GrantPassword),
		},
	}
	cti.Spec.OAuth2.Scopes = []string{"import"}
	h.must(env.Client.Create(h.ctx, cti))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "other-"}}
	h.must(env.Client.Create(h.ctx, other))
	h.must(env.Client.Create(h.ctx, testenv.UserSecret(other.Name, "user", userName, userPassword)))
	h.startManager(managerOptions{})

	onShared := func(job *jobtokenv1alpha1.ImportJob) *jobtokenv1alpha1.ImportJob {
		job.Spec.IssuerRef = testenv.OnClusterTokenIssuer(cti.Name)
		return job
	}
	allowed := onShared(h.importJob("allowed", jobtokenv1alpha1.GrantPassword))
	allowed.Spec.Credentials.Scopes = []string{"import"}
	h.must(env.Client.Create(h.ctx, allowed))
	testenv.Eventually(h.t, 30*time.Second, "the allowed job running", func() bool {
		return h.getJob(allowed.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning
	})
	before := h.issuer.Counters()

	otherNamespace := onShared(h.importJob("other-namespace", jobtokenv1alpha1.GrantPassword))
	otherNamespace.Namespace = other.Name
	wrongGrant := onShared(h.importJob("wrong-grant", jobtokenv1alpha1.GrantClientCredentials))
	moreScopes := onShared(h.importJob("more-scopes", jobtokenv1alpha1.GrantPassword))
	moreScopes.Spec.Credentials.Scopes = []string{"import", "admin"}
	moreAudience := onShared(h.importJob("more-audience", jobtokenv1alpha1.GrantPassword))
	moreAudience.Spec.Credentials.Audience = []string{"billing"}
	refused := []struct {
		job  *jobtokenv1alpha1.ImportJob
		want []string
	}{
		{otherNamespace, []string{"namespace " + other.Name}},
		{wrongGrant, []string{"grant ClientCredentials"}},
		{moreScopes, []string{"spec.credentials.scopes", "admin"}},
		{moreAudience, []string{"spec.credentials.audience", "billing"}},
	}
	for _, r := range refused {
		h.must(env.Client.Create(h.ctx, r.job))
	}
	for _, r := range refused {
		got := &jobtokenv1alpha1.ImportJob{}
		testenv.Eventually(h.t, 20*time.Second, r.job.Name+" stalled", func() bool {
			return env.Client.Get(h.ctx, client.ObjectKeyFromObject(r.job), got) == nil &&
				stalledWith(got, jobtokenv1alpha1.ReasonIssuerNotAllowed) != nil
		})
		msg := stalledWith(got, jobtokenv1alpha1.ReasonIssuerNotAllowed).Message
		for _, w := range append(r.want, cti.Name) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the Stalled message does not name %q: %s", r.job.Name, w, msg)
			}
		}
		if got.Status.Phase == jobtokenv1alpha1.PhaseRunning {
			t.Errorf("%s runs although its issuer does not allow it", r.job.Name)
		}
	}
	if n := tokenRequestCount(h.issuer.Counters()) - tokenRequestCount(before); n != 0 {
		t.Errorf("the issuer received %d token requests for jobs it does not allow", n)
	}
	for _, r := range refused {
		if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: r.job.Namespace, Name: r.job.Name}, &batchv1.Job{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: a batch Job exists (or could not be checked: %v) for a job its issuer does not allow", r.job.Name, err)
		}
	}
}
