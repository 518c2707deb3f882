package devissuer

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestRevokeAccessToken(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	at := p.str("access_token")
	if r := h.introspect(at); r.body["active"] != true || r.str("token_type") != "access_token" ||
		r.str("sub") != alice || r.str("client_id") != jobClient || r.num("exp") != t0.Add(20*time.Second).Unix() {
		t.Fatalf("introspect active AT: %s", r.raw)
	}
	r := h.post("/revoke", jobClient, jobSecret, url.Values{"token": {at}, "token_type_hint": {"access_token"}})
	if r.status != http.StatusOK {
		t.Fatalf("revoke AT: %d %s", r.status, r.raw)
	}
	if r := h.introspect(at); r.body["active"] != false || len(r.body) != 1 {
		t.Fatalf("introspect revoked AT: %s", r.raw)
	}
	h.wantRecords(at, http.StatusUnauthorized, Reason401Revoked)
	// Revoking an access token leaves the refresh token alone.
	h.wantRecords(h.mustRefresh(p.str("refresh_token")).str("access_token"), http.StatusOK, "")
	if c := h.s.Counters(); c.Revocations != 1 || c.FamiliesRevoked != 0 || c.Introspections != 2 {
		t.Errorf("Revocations %d FamiliesRevoked %d Introspections %d", c.Revocations, c.FamiliesRevoked, c.Introspections)
	}
}

func TestRevokeRefreshTokenKillsFamily(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	r2 := h.mustRefresh(p.str("refresh_token"))
	rt := r2.str("refresh_token")
	if r := h.introspect(rt); r.body["active"] != true || r.str("token_type") != "refresh_token" || r.str("client_id") != jobClient {
		t.Fatalf("introspect RT: %s", r.raw)
	}
	// No hint: the server finds the token type itself.
	if r := h.post("/revoke", jobClient, jobSecret, url.Values{"token": {rt}}); r.status != http.StatusOK {
		t.Fatalf("revoke RT: %d %s", r.status, r.raw)
	}
	for _, tok := range []string{rt, r2.str("access_token"), p.str("access_token")} {
		if r := h.introspect(tok); r.body["active"] != false {
			t.Errorf("token still active after RT revocation: %s", r.raw)
		}
	}
	h.wantRecords(r2.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	if r := h.refresh(jobClient, jobSecret, rt); r.status != 400 || r.str("error") != "invalid_grant" {
		t.Fatalf("refresh after revoke: %d %s", r.status, r.raw)
	}
	// Idempotent; unknown tokens are 200 too (RFC 7009 §2.2).
	for _, tok := range []string{rt, "never-issued"} {
		if r := h.post("/revoke", jobClient, jobSecret, url.Values{"token": {tok}}); r.status != http.StatusOK {
			t.Errorf("revoke again: %d", r.status)
		}
	}
	// Client authentication is required.
	wantOAuthError(t, h.post("/revoke", jobClient, "bad", url.Values{"token": {rt}}), 401, "invalid_client", "")
	wantOAuthError(t, h.post("/introspect", "", "", url.Values{"token": {rt}}), 401, "invalid_client", "")
	c := h.s.Counters()
	if c.Revocations != 3 || c.FamiliesRevoked != 1 || c.FamiliesRevokedByReason[ReasonRevoked] != 1 || c.RefreshReuse != 0 || c.ActiveFamilies != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestRevokeOtherClientsToken(t *testing.T) {
	h := newHarness(t, nil)
	p := h.password(uiClient, uiSecret, alice, alicePass)
	r := h.post("/revoke", jobClient, jobSecret, url.Values{"token": {p.str("refresh_token")}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("revoking another client's token: %d %s", r.status, r.raw)
	}
	h.wantRecords(p.str("access_token"), http.StatusOK, "")
}

func TestLogoutUser(t *testing.T) {
	h := newHarness(t, nil)
	ui := h.password(uiClient, uiSecret, alice, alicePass)
	ui2 := h.password(uiClient, uiSecret, alice, alicePass) // a second browser session
	job := h.exchange(jobClient, jobSecret, ui.str("access_token"))
	cc := h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}})
	bobs := h.password(uiClient, uiSecret, bob, bobPass)

	r := h.post("/logout?user="+alice, "", "", nil)
	if r.status != http.StatusOK || r.num("familiesEnded") != 3 {
		t.Fatalf("/logout: %d %s", r.status, r.raw)
	}
	for _, p := range []resp{ui, ui2} {
		h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
		wantOAuthError(t, h.refresh(uiClient, uiSecret, p.str("refresh_token")), 400, "invalid_grant", "Session not active")
	}
	// The family exchanged from alice's token lives in her session: it ends too.
	h.wantRecords(job.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	wantOAuthError(t, h.refresh(jobClient, jobSecret, job.str("refresh_token")), 400, "invalid_grant", "Session not active")
	h.wantRecords(cc.str("access_token"), http.StatusOK, "")
	h.wantRecords(bobs.str("access_token"), http.StatusOK, "")
	if n := h.s.LogoutUser(alice); n != 0 {
		t.Errorf("second logout ended %d", n)
	}
	c := h.s.Counters()
	if c.FamiliesRevokedByReason[ReasonLogout] != 3 || c.Logouts != 2 || c.ActiveFamilies != 2 {
		t.Errorf("byReason %v logouts %d active %d", c.FamiliesRevokedByReason, c.Logouts, c.ActiveFamilies)
	}
	// Exchanging a logged-out user's token is refused.
	wantOAuthError(t, h.exchange(jobClient, jobSecret, ui2.str("access_token")), 400, "invalid_grant", "")
}

func TestLogoutUserExchangeOwnSession(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ExchangeOwnSession = true })
	ui := h.password(uiClient, uiSecret, alice, alicePass)
	job := h.exchange(jobClient, jobSecret, ui.str("access_token"))
	if n := h.s.LogoutUser(alice); n != 1 {
		t.Fatalf("LogoutUser ended %d families, want 1", n)
	}
	// The exchanged family has a session of its own: it survives the user's logout.
	h.wantRecords(job.str("access_token"), http.StatusOK, "")
	h.wantRecords(h.mustRefresh(job.str("refresh_token")).str("access_token"), http.StatusOK, "")
	h.wantRecords(ui.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
}

func TestRefreshTokenLogout(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	other := h.mustPassword()
	r := h.post("/logout", jobClient, jobSecret, url.Values{"refresh_token": {p.str("refresh_token")}})
	if r.status != http.StatusNoContent {
		t.Fatalf("RT logout: %d %s", r.status, r.raw)
	}
	h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	h.wantRecords(other.str("access_token"), http.StatusOK, "")
	if r := h.post("/logout", "", "", nil); r.status != http.StatusBadRequest {
		t.Errorf("logout without user or token: %d", r.status)
	}
}
