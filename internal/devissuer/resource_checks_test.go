package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Checks of the protected resource (forged signature under the current kid, a token of
// another issuer signed with the same key) and of Handler() served without Start.
// Uses helpers_test.go.

func TestOAuthResourceChecks(t *testing.T) {
	h := newHarness(t, nil) // AT TTL 20s, leeway 2s
	at := h.mustPassword().str("access_token")
	h.clk.Step(21 * time.Second) // exp + 1s: inside the leeway (valid while now < exp + leeway)
	h.wantRecords(at, 200, "")
	h.clk.Step(time.Second) // exp + leeway
	h.wantRecords(at, 401, Reason401Expired)
	if st, _ := h.records(http.MethodPost, h.mustPassword().str("access_token")); st != 200 {
		t.Fatalf("POST /api/records: %d", st)
	}

	h.wantRecords("", 401, Reason401Invalid)
	h.wantRecords("garbage", 401, Reason401Invalid)
	h.wantRecords("a.b.c", 401, Reason401Invalid)

	// Signed by another key that claims the current kid.
	forgedKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: h.url, Subject: alice, ExpiresAt: jwt.NewNumericDate(h.clk.Now().Add(time.Minute)),
	})
	forged.Header["kid"] = h.s.KeyID()
	signed, err := forged.SignedString(forgedKey)
	if err != nil {
		t.Fatal(err)
	}
	h.wantRecords(signed, 401, Reason401Invalid)

	// Same key (shared key file), another issuer: refused.
	other := newHarness(t, nil)
	other.clk.SetTime(h.clk.Now())
	h.wantRecords(other.mustPassword().str("access_token"), 401, Reason401Invalid)

	// FOLIO style header.
	req := h.newRequest(http.MethodGet, "/api/records", nil)
	req.Header.Set("X-Okapi-Token", h.mustPassword().str("access_token"))
	if r := h.do(req); r.status != 200 || r.str("status") != "accepted" || r.str("subject") != alice {
		t.Fatalf("X-Okapi-Token: %d %s", r.status, r.raw)
	}
	r := h.do(h.newRequest(http.MethodGet, "/api/records", nil))
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	c := h.s.Counters()
	if c.Resource401[Reason401Expired] != 1 || c.Resource401[Reason401Invalid] != 6 || c.Resource401Total != 7 || c.ResourceAccepted != 3 {
		t.Fatalf("401 %v total %d accepted %d", c.Resource401, c.Resource401Total, c.ResourceAccepted)
	}
}

func TestOAuthHandlerWithoutStart(t *testing.T) {
	s, err := New(Config{Clients: map[string]string{jobClient: jobSecret}, KeyFile: sharedKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	h := &harness{t: t, s: s, url: ts.URL, hc: ts.Client()}
	if r := h.get("/.well-known/openid-configuration"); r.str("issuer") != ts.URL {
		t.Fatalf("issuer %q, want %s", r.str("issuer"), ts.URL)
	}
	r := h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	st, reason := h.records(http.MethodGet, r.str("access_token"))
	if st != 200 {
		t.Fatalf("/api/records: %d %s", st, reason)
	}
}
