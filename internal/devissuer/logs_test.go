package devissuer

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

// secretSet is what must never reach the log, each with a label for the failure message
// (the values themselves are never printed).
type secretSet struct {
	labels []string
	values []string
}

func (s *secretSet) add(label, v string) {
	if v == "" {
		return
	}
	s.labels, s.values = append(s.labels, label), append(s.values, v)
	// A JWT's claims and signature are secret on their own; its header is the same for
	// every token, so it proves nothing.
	if parts := strings.Split(v, "."); len(parts) == 3 {
		s.labels, s.values = append(s.labels, label+" claims", label+" signature"), append(s.values, parts[1], parts[2])
	}
}

// addTokens records the tokens of an OAuth answer.
func (s *secretSet) addTokens(label string, r resp) {
	s.add(label+" access token", r.str("access_token"))
	s.add(label+" refresh token", r.str("refresh_token"))
}

// TestLogsCarryNoSecrets sends every grant, refresh, exchange, revocation, introspection
// and logout, the FOLIO ones, failed attempts and a dropped answer, all carrying client
// secrets, user passwords and tokens, with the log at debug level; the log must describe
// the requests and hold none of those values.
func TestLogsCarryNoSecrets(t *testing.T) {
	var logs testenv.LogBuffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.SessionMax = 5 * time.Minute
	})
	var secrets secretSet
	secrets.add("job client secret", jobSecret)
	secrets.add("ui client secret", uiSecret)
	secrets.add("alice's password", alicePass)
	secrets.add("bob's password", bobPass)
	const wrongPassword, wrongSecret = "wrong-password-7c1e", "wrong-client-secret-7c1e"
	secrets.add("wrong password", wrongPassword)
	secrets.add("wrong client secret", wrongSecret)
	want := func(r resp, status int, what string) resp {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s", what, r.status, r.raw)
		}
		return r
	}

	// Grants: password (client_secret_basic and client_secret_post), client credentials,
	// refresh, token exchange; then failures that carry a secret.
	p := h.mustPassword()
	secrets.addTokens("password grant", p)
	post := want(h.post("/token", "", "", url.Values{
		"grant_type": {"password"}, "username": {bob}, "password": {bobPass},
		"client_id": {uiClient}, "client_secret": {uiSecret},
	}), http.StatusOK, "password grant with client_secret_post")
	secrets.addTokens("client_secret_post grant", post)
	cc := want(h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}}), http.StatusOK, "client credentials")
	secrets.addTokens("client credentials", cc)
	r1 := h.mustRefresh(p.str("refresh_token"))
	secrets.addTokens("refresh", r1)
	x := want(h.exchange(jobClient, jobSecret, post.str("access_token")), http.StatusOK, "token exchange")
	secrets.addTokens("exchange", x)
	want(h.password(jobClient, jobSecret, alice, wrongPassword), http.StatusBadRequest, "wrong password")
	want(h.password(jobClient, wrongSecret, alice, alicePass), http.StatusUnauthorized, "wrong client secret")
	want(h.refresh(jobClient, jobSecret, "not-a-refresh-token-7c1e"), http.StatusBadRequest, "unknown refresh token")
	secrets.add("unknown refresh token", "not-a-refresh-token-7c1e")
	// Reuse of the spent refresh token revokes its family.
	want(h.refresh(jobClient, jobSecret, p.str("refresh_token")), http.StatusBadRequest, "refresh token reuse")

	// A refresh whose answer is dropped after the commit.
	d := h.mustPassword()
	secrets.addTokens("password grant before the drop", d)
	h.s.SetFaults(Faults{CommitThenDrop: 1})
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {d.str("refresh_token")}}
	req := h.newRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(jobClient, jobSecret)
	if res, err := h.hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		t.Fatalf("the dropped refresh was answered %d", res.StatusCode)
	} else if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("dropped refresh: %v", err)
	}

	// Introspection and revocation of access and refresh tokens, and the protected resource.
	for _, tok := range []string{x.str("access_token"), x.str("refresh_token"), cc.str("access_token")} {
		if h.introspect(tok).body["active"] != true {
			t.Fatalf("introspection: a live token is not active")
		}
	}
	h.wantRecords(cc.str("access_token"), http.StatusOK, "")
	want(h.post("/revoke", jobClient, jobSecret, url.Values{"token": {cc.str("access_token")}, "token_type_hint": {"access_token"}}), http.StatusOK, "revoke an access token")
	want(h.post("/revoke", jobClient, jobSecret, url.Values{"token": {x.str("refresh_token")}}), http.StatusOK, "revoke a refresh token")
	want(h.post("/revoke", jobClient, wrongSecret, url.Values{"token": {r1.str("refresh_token")}}), http.StatusUnauthorized, "revoke with a wrong client secret")
	want(h.post("/introspect", jobClient, wrongSecret, url.Values{"token": {r1.str("access_token")}}), http.StatusUnauthorized, "introspect with a wrong client secret")

	// FOLIO: login, refresh, logout.
	fl := h.folioLogin(testTenant, `{"username":"`+alice+`","password":"`+alicePass+`"}`)
	fat, frt := h.wantFolioTokens(fl, 20*time.Second, 5*time.Minute) // the refresh token ends with the session
	secrets.add("FOLIO access token", fat)
	secrets.add("FOLIO refresh token", frt)
	fr := h.folioCall("/authn/refresh", frt)
	fat2, frt2 := h.wantFolioTokens(fr, 20*time.Second, 5*time.Minute)
	secrets.add("refreshed FOLIO access token", fat2)
	secrets.add("refreshed FOLIO refresh token", frt2)
	want(h.folioLogin(testTenant, `{"username":"`+alice+`","password":"`+wrongPassword+`"}`), http.StatusUnprocessableEntity, "FOLIO login with a wrong password")
	want(h.folioCall("/authn/logout", frt2), http.StatusNoContent, "FOLIO logout")

	// Logout by refresh token and by user; a refresh past the session maximum.
	lo := h.mustPassword()
	secrets.addTokens("password grant before the logout", lo)
	want(h.post("/logout", jobClient, jobSecret, url.Values{"refresh_token": {lo.str("refresh_token")}}), http.StatusNoContent, "logout by refresh token")
	want(h.post("/logout?user="+bob, "", "", nil), http.StatusOK, "logout of a user")
	late := h.mustPassword()
	secrets.addTokens("password grant before the session maximum", late)
	h.clk.Step(5*time.Minute + time.Second)
	want(h.refresh(jobClient, jobSecret, late.str("refresh_token")), http.StatusBadRequest, "refresh past the session maximum")

	out := logs.String()
	if strings.TrimSpace(out) == "" {
		t.Fatal("the log is empty: the test proves nothing")
	}
	for _, event := range []string{
		`msg="refresh token reuse detected: family revoked"`,
		`msg="refresh committed, answer dropped (injected fault)"`,
		`msg="family revoked"`,
		`msg="FOLIO session logged out"`,
		`msg="session logged out"`,
		`msg="user logged out" user=` + bob,
		`msg="refresh refused: session maximum passed"`,
		"client=" + jobClient,
		"user=" + alice,
	} {
		if !strings.Contains(out, event) {
			t.Errorf("the log does not mention %s", event)
		}
	}
	for i, v := range secrets.values {
		if strings.Contains(out, v) {
			t.Errorf("the log holds the %s (%d bytes)", secrets.labels[i], len(v))
		}
	}
}
