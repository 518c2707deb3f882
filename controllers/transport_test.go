//go:build integration

package controllers

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// TestIssuerTransport: an issuer behind a private CA serves jobs once its CA bundle is
// given (from a Secret) and is refused without it; an issuer on plain http is refused
// unless it sets insecureAllowPlainHTTP, and then carries InsecureTransport=True with a
// Warning event; a CA bundle without a certificate is named in the condition. No
// credential reaches an issuer the manager refused.
func TestIssuerTransport(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
	h.startManager(managerOptions{})

	// The same development issuer, served over TLS with a certificate of its own CA.
	dev, err := devissuer.New(devissuer.Config{AccessTokenTTL: 10 * time.Minute,
		Clients: map[string]string{clientID: clientSecret}, Users: map[string]string{userName: userPassword}})
	h.must(err)
	var tokenRequests atomic.Int32
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" && r.URL.Path != "/jwks" {
			tokenRequests.Add(1)
		}
		dev.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(tlsSrv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	h.must(env.Client.Create(h.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "private-ca"},
		Data:       map[string][]byte{"ca.crt": caPEM},
	}))
	issuerOn := func(name, url string, mod func(*jobtokenv1alpha1.TokenIssuerSpec)) {
		ti := &jobtokenv1alpha1.TokenIssuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
			Spec: jobtokenv1alpha1.TokenIssuerSpec{OAuth2: &jobtokenv1alpha1.OAuth2IssuerSpec{
				IssuerURL: url, ClientID: clientID, ClientAuth: jobtokenv1alpha1.ClientAuthSecretBasic,
				ClientSecretRef: &jobtokenv1alpha1.SecretKeySelector{Name: "client"},
			}},
		}
		mod(&ti.Spec)
		h.must(env.Client.Create(h.ctx, ti))
	}
	issuerOn("private-ca", tlsSrv.URL, func(s *jobtokenv1alpha1.TokenIssuerSpec) {
		s.CABundleSecretRef = &jobtokenv1alpha1.SecretKeySelector{Name: "private-ca"}
	})
	issuerOn("system-roots", tlsSrv.URL, func(*jobtokenv1alpha1.TokenIssuerSpec) {})
	issuerOn("bad-bundle", tlsSrv.URL, func(s *jobtokenv1alpha1.TokenIssuerSpec) { s.CABundle = []byte("not a certificate") })
	issuerOn("plain", h.issuer.URL(), func(*jobtokenv1alpha1.TokenIssuerSpec) {})

	readyCond := func(name, condType string) *metav1.Condition {
		ti := &jobtokenv1alpha1.TokenIssuer{}
		if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, ti); err != nil {
			return nil
		}
		return meta.FindStatusCondition(ti.Status.Conditions, condType)
	}
	waitReady := func(name string, want metav1.ConditionStatus, reason string, msgHas ...string) {
		t.Helper()
		testenv.Eventually(h.t, 20*time.Second, name+" Ready="+string(want), func() bool {
			c := readyCond(name, jobtokenv1alpha1.ConditionReady)
			return c != nil && c.Status == want && (reason == "" || c.Reason == reason)
		})
		c := readyCond(name, jobtokenv1alpha1.ConditionReady)
		for _, m := range msgHas {
			if !strings.Contains(c.Message, m) {
				t.Errorf("%s: Ready message %q does not say %q", name, c.Message, m)
			}
		}
	}
	waitReady("private-ca", metav1.ConditionTrue, "")
	waitReady("system-roots", metav1.ConditionFalse, jobtokenv1alpha1.ReasonIssuerConfiguration, "certificate")
	waitReady("bad-bundle", metav1.ConditionFalse, jobtokenv1alpha1.ReasonInvalidCABundle, "spec.caBundle")
	waitReady("plain", metav1.ConditionFalse, jobtokenv1alpha1.ReasonIssuerConfiguration, "plain http", "insecureAllowPlainHTTP")
	if c := readyCond("private-ca", jobtokenv1alpha1.ConditionInsecureTransport); c != nil {
		t.Errorf("an https issuer carries %s=%s", c.Type, c.Status)
	}

	// A job on the private-CA issuer is served.
	tokensBefore := tokenRequests.Load()
	job := h.importJob("through-private-ca", jobtokenv1alpha1.GrantClientCredentials)
	job.Spec.IssuerRef.Name = "private-ca"
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "the job on the private-CA issuer running", func() bool {
		return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning
	})
	if tokenRequests.Load() == tokensBefore {
		t.Fatal("the job is running but the TLS issuer saw no token request")
	}

	// The harness issuer allows plain http: it says so in a condition and a Warning event.
	testenv.Eventually(h.t, 20*time.Second, "InsecureTransport on the plain-http issuer", func() bool {
		c := readyCond("dev", jobtokenv1alpha1.ConditionInsecureTransport)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == jobtokenv1alpha1.ReasonPlainHTTPAllowed
	})
	testenv.Eventually(h.t, 10*time.Second, "the PlainHTTPAllowed event", func() bool {
		return hasEvent(h.events("dev"), jobtokenv1alpha1.ReasonPlainHTTPAllowed)
	})
	// Turning it off removes the condition and refuses the issuer.
	dev0 := &jobtokenv1alpha1.TokenIssuer{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "dev"}, dev0))
	dev0.Spec.InsecureAllowPlainHTTP = false
	h.must(env.Client.Update(h.ctx, dev0))
	waitReady("dev", metav1.ConditionFalse, jobtokenv1alpha1.ReasonIssuerConfiguration, "plain http")
	if c := readyCond("dev", jobtokenv1alpha1.ConditionInsecureTransport); c != nil {
		t.Errorf("InsecureTransport stays after the field was cleared: %+v", c)
	}

	// Nothing with a credential reached the refused issuers: a job on the plain one waits.
	plainBefore := tokenRequestCount(h.issuer.Counters())
	plainJob := h.importJob("on-plain-http", jobtokenv1alpha1.GrantPassword)
	plainJob.Spec.IssuerRef.Name = "plain"
	h.must(env.Client.Create(h.ctx, plainJob))
	time.Sleep(3 * time.Second)
	if got := h.getJob(plainJob.Name); got.Status.Phase == jobtokenv1alpha1.PhaseRunning {
		t.Fatal("a job on a refused plain-http issuer runs")
	}
	if n := tokenRequestCount(h.issuer.Counters()) - plainBefore; n != 0 {
		t.Fatalf("the plain-http issuer received %d token request(s)", n)
	}
}
