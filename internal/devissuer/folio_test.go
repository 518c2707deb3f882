package devissuer

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func (h *harness) folioLogin(tenant, body string) resp {
	h.t.Helper()
	req := h.newRequest(http.MethodPost, "/authn/login-with-expiry", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set(HeaderTenant, tenant)
	}
	return h.do(req)
}

func (h *harness) folioCall(path, rt string) resp {
	h.t.Helper()
	req := h.newRequest(http.MethodPost, path, nil)
	req.Header.Set(HeaderTenant, testTenant)
	if rt != "" {
		req.AddCookie(&http.Cookie{Name: CookieRefreshToken, Value: rt})
	}
	return h.do(req)
}

// wantFolioTokens checks a 201 with both cookies and the expiry body.
func (h *harness) wantFolioTokens(r resp, atTTL, rtTTL time.Duration) (at, rt string) {
	h.t.Helper()
	if r.status != http.StatusCreated {
		h.t.Fatalf("want 201, got %d %s", r.status, r.raw)
	}
	ac, rc := r.cookie[CookieAccessToken], r.cookie[CookieRefreshToken]
	if ac == nil || rc == nil || ac.Value == "" || rc.Value == "" {
		h.t.Fatalf("cookies %v", r.header["Set-Cookie"])
	}
	if ac.Path != "/" || !ac.HttpOnly || ac.MaxAge != int(atTTL/time.Second) {
		h.t.Errorf("access cookie %+v", ac)
	}
	if rc.Path != "/authn" || !rc.HttpOnly || rc.MaxAge != int(rtTTL/time.Second) {
		h.t.Errorf("refresh cookie %+v", rc)
	}
	now := h.clk.Now()
	if got, want := r.str("accessTokenExpiration"), now.Add(atTTL).UTC().Format(time.RFC3339); got != want {
		h.t.Errorf("accessTokenExpiration %s, want %s", got, want)
	}
	if got, want := r.str("refreshTokenExpiration"), now.Add(rtTTL).UTC().Format(time.RFC3339); got != want {
		h.t.Errorf("refreshTokenExpiration %s, want %s", got, want)
	}
	if strings.Contains(string(r.raw), ac.Value) || strings.Contains(string(r.raw), rc.Value) {
		h.t.Error("FOLIO body carries token bytes")
	}
	return ac.Value, rc.Value
}

func TestFolioLoginTenantAndCredentials(t *testing.T) {
	h := newHarness(t, nil)
	good := `{"username":"alice","password":"alice-pw"}`
	if r := h.folioLogin("", good); r.status != http.StatusBadRequest {
		t.Errorf("missing tenant: %d", r.status)
	}
	if r := h.folioLogin("other", good); r.status != http.StatusBadRequest {
		t.Errorf("wrong tenant: %d", r.status)
	}
	if r := h.folioLogin(testTenant, `{"username":"alice","password":"nope"}`); r.status != http.StatusUnprocessableEntity {
		t.Errorf("wrong password: %d", r.status)
	}
	if r := h.folioLogin(testTenant, `{"username":"alice"`); r.status != http.StatusBadRequest {
		t.Errorf("malformed body: %d", r.status)
	}
	at, _ := h.wantFolioTokens(h.folioLogin(testTenant, good), 20*time.Second, 600*time.Second)
	_, claims := h.parseAT(at)
	if claims["sub"] != alice || claims["tenant"] != testTenant {
		t.Errorf("claims %v", claims)
	}
	h.wantRecords(at, http.StatusOK, "")
	// FOLIO's own header works at the resource too.
	req := h.newRequest(http.MethodGet, "/api/records", nil)
	req.Header.Set("X-Okapi-Token", at)
	if r := h.do(req); r.status != http.StatusOK {
		t.Errorf("X-Okapi-Token: %d", r.status)
	}
	got := h.s.Counters().TokenRequests[GrantKeyFolioLogin]
	if got[ResultOK] != 1 || got["folio_400"] != 3 || got["folio_422"] != 1 {
		t.Errorf("TokenRequests[folio_login] = %v", got)
	}
}

func TestFolioRefreshReuseAndLogout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SessionMax = time.Hour })
	at1, rt1 := h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 600*time.Second)

	h.clk.Step(15 * time.Second)
	at2, rt2 := h.wantFolioTokens(h.folioCall("/authn/refresh", rt1), 20*time.Second, 600*time.Second)
	if at2 == at1 || rt2 == rt1 {
		t.Fatal("FOLIO refresh did not rotate both tokens")
	}
	h.wantRecords(at2, http.StatusOK, "")
	if r := h.folioCall("/authn/refresh", ""); r.status != http.StatusBadRequest {
		t.Errorf("refresh without cookie: %d", r.status)
	}
	if r := h.folioCall("/authn/refresh", "unknown"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("unknown RT: %d", r.status)
	}

	// Reuse: 422, the family dies, the newest RT too.
	if r := h.folioCall("/authn/refresh", rt1); r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.raw), "TOKEN_REFRESH_UNPROCESSABLE") {
		t.Fatalf("replayed RT: %d %s", r.status, r.raw)
	}
	if r := h.folioCall("/authn/refresh", rt2); r.status != http.StatusUnprocessableEntity {
		t.Errorf("newest RT after reuse: %d", r.status)
	}
	h.wantRecords(at2, http.StatusUnauthorized, Reason401Revoked)
	c := h.s.Counters()
	if c.RefreshReuse != 1 || c.FamiliesRevoked != 1 || c.Refreshes != 1 || c.TokenRequests[GrantKeyFolioRefresh]["folio_422"] != 3 {
		t.Errorf("counters: reuse %d revoked %d refreshes %d requests %v", c.RefreshReuse, c.FamiliesRevoked, c.Refreshes, c.TokenRequests)
	}

	// Logout: 204, cookies cleared, the RT and AT dead; the session maximum counts from login.
	h.clk.Step(time.Minute)
	at3, rt3 := h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 600*time.Second)
	r := h.folioCall("/authn/logout", rt3)
	if r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.raw)
	}
	if c := r.cookie[CookieRefreshToken]; c == nil || c.Value != "" || c.MaxAge >= 0 {
		t.Errorf("refresh cookie not cleared: %+v", c)
	}
	if r := h.folioCall("/authn/refresh", rt3); r.status != http.StatusUnprocessableEntity {
		t.Errorf("refresh after logout: %d", r.status)
	}
	h.wantRecords(at3, http.StatusUnauthorized, Reason401Revoked)
	if r := h.folioCall("/authn/logout", rt3); r.status != http.StatusNoContent {
		t.Errorf("second logout: %d", r.status)
	}
}

func TestFolioSessionMaxAndExpiry(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SessionMax = 50 * time.Second; c.RefreshTokenTTL = 30 * time.Second })
	_, rt := h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 30*time.Second)
	h.clk.Step(25 * time.Second)
	_, rt = h.wantFolioTokens(h.folioCall("/authn/refresh", rt), 20*time.Second, 25*time.Second)
	h.clk.Step(25 * time.Second)
	if r := h.folioCall("/authn/refresh", rt); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("refresh at session max: %d", r.status)
	}
	if c := h.s.Counters(); c.SessionMaxEnded != 1 {
		t.Errorf("SessionMaxEnded %d", c.SessionMaxEnded)
	}
	// FOLIO refresh tokens are not usable at the OAuth token endpoint.
	_, rt = h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 30*time.Second)
	wantOAuthError(t, h.refresh(jobClient, jobSecret, rt), 400, "invalid_grant", "")
	// Expired RT.
	h.clk.Step(31 * time.Second)
	if r := h.folioCall("/authn/refresh", rt); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("expired RT: %d", r.status)
	}
}

func TestFolioLogoutUser(t *testing.T) {
	h := newHarness(t, nil)
	at, rt := h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 600*time.Second)
	if n := h.s.LogoutUser(alice); n != 1 {
		t.Fatalf("LogoutUser = %d", n)
	}
	h.wantRecords(at, http.StatusUnauthorized, Reason401Revoked)
	if r := h.folioCall("/authn/refresh", rt); r.status != http.StatusUnprocessableEntity {
		t.Errorf("refresh after LogoutUser: %d", r.status)
	}
}

func TestFolioCommitThenDropAndDown(t *testing.T) {
	h := newHarness(t, nil)
	_, rt := h.wantFolioTokens(h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`), 20*time.Second, 600*time.Second)
	h.s.SetFaults(Faults{CommitThenDrop: 1})
	req := h.newRequest(http.MethodPost, "/authn/refresh", nil)
	req.Header.Set(HeaderTenant, testTenant)
	req.AddCookie(&http.Cookie{Name: CookieRefreshToken, Value: rt})
	if res, err := h.hc.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("dropped FOLIO refresh answered %d", res.StatusCode)
	}
	if r := h.folioCall("/authn/refresh", rt); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("replay after drop: %d", r.status)
	}
	if c := h.s.Counters(); c.RefreshReuse != 1 || c.TokenRequests[GrantKeyFolioRefresh][ResultDropped] != 1 {
		t.Errorf("counters %+v", c)
	}
	h.s.SetFaults(Faults{Down: true})
	r := h.folioLogin(testTenant, `{"username":"alice","password":"alice-pw"}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
		t.Errorf("login while down: %d", r.status)
	}
}
