package devissuer

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDiscovery(t *testing.T) {
	h := newHarness(t, nil)
	if !strings.HasPrefix(h.url, "http://127.0.0.1:") || strings.HasSuffix(h.url, "/") {
		t.Fatalf("URL() = %q", h.url)
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := h.get(p)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d", p, r.status)
		}
		for k, want := range map[string]string{
			"issuer":                 h.url,
			"token_endpoint":         h.url + "/token",
			"revocation_endpoint":    h.url + "/revoke",
			"introspection_endpoint": h.url + "/introspect",
			"jwks_uri":               h.url + "/jwks",
		} {
			if got := r.str(k); got != want {
				t.Errorf("%s %s = %q, want %q", p, k, got, want)
			}
		}
		grants := strSlice(r.body["grant_types_supported"])
		for _, g := range []string{"password", "client_credentials", "refresh_token", GrantTypeTokenExchange} {
			if !slices.Contains(grants, g) {
				t.Errorf("%s grant_types_supported %v lacks %s", p, grants, g)
			}
		}
		auth := strSlice(r.body["token_endpoint_auth_methods_supported"])
		if !slices.Contains(auth, "client_secret_basic") || !slices.Contains(auth, "client_secret_post") {
			t.Errorf("%s token_endpoint_auth_methods_supported = %v", p, auth)
		}
	}
	keys := h.jwksKeys()
	if len(keys) != 1 || keys[h.s.KeyID()] == nil {
		t.Fatalf("JWKS kids = %v, want only %s", keys, h.s.KeyID())
	}
}

func strSlice(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestPasswordGrant(t *testing.T) {
	h := newHarness(t, nil)
	r := h.mustPassword()
	if r.str("token_type") != "Bearer" || r.num("expires_in") != 20 || r.num("refresh_expires_in") != 600 ||
		r.str("refresh_token") == "" || r.str("scope") == "" {
		t.Fatalf("token response %s", r.raw)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	tok, claims := h.parseAT(r.str("access_token"))
	if tok.Header["kid"] != h.s.KeyID() || tok.Header["alg"] != "RS256" {
		t.Errorf("header %v", tok.Header)
	}
	if claims["iss"] != h.url || claims["sub"] != alice || claims["jti"] == "" || claims["scope"] != r.str("scope") {
		t.Errorf("claims %v", claims)
	}
	aud, _ := claims.GetAudience()
	if !slices.Contains([]string(aud), jobClient) {
		t.Errorf("aud %v lacks %s", aud, jobClient)
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if !iat.Equal(t0) || !exp.Equal(t0.Add(20*time.Second)) {
		t.Errorf("iat %v exp %v", iat, exp)
	}
	h.wantRecords(r.str("access_token"), http.StatusOK, "")

	// client_secret_post works as well.
	r2 := h.token("", "", url.Values{
		"grant_type": {"password"}, "username": {bob}, "password": {bobPass},
		"client_id": {uiClient}, "client_secret": {uiSecret}, "scope": {"openid  records"},
	})
	if r2.status != http.StatusOK || r2.str("scope") != "openid records" {
		t.Fatalf("client_secret_post: %d %s", r2.status, r2.raw)
	}

	wantOAuthError(t, h.password(jobClient, jobSecret, alice, "wrong"), 400, "invalid_grant", "Invalid user credentials")
	wantOAuthError(t, h.password(jobClient, jobSecret, "nobody", "x"), 400, "invalid_grant", "")
	bad := h.password(jobClient, "wrong", alice, alicePass)
	wantOAuthError(t, bad, 401, "invalid_client", "")
	if bad.header.Get("WWW-Authenticate") == "" {
		t.Error("invalid_client without WWW-Authenticate")
	}
	wantOAuthError(t, h.password("", "", alice, alicePass), 401, "invalid_client", "")
	wantOAuthError(t, h.token(jobClient, jobSecret, url.Values{"grant_type": {"authorization_code"}}), 400, "unsupported_grant_type", "")

	c := h.s.Counters()
	if got := c.TokenRequests[GrantKeyPassword]; got[ResultOK] != 2 || got["invalid_grant"] != 2 || got["invalid_client"] != 2 {
		t.Errorf("TokenRequests[password] = %v", got)
	}
	if c.TokenRequests[GrantKeyOther]["unsupported_grant_type"] != 1 {
		t.Errorf("TokenRequests[other] = %v", c.TokenRequests[GrantKeyOther])
	}
	if c.ResourceAccepted != 1 || c.ActiveFamilies != 2 {
		t.Errorf("ResourceAccepted %d ActiveFamilies %d", c.ResourceAccepted, c.ActiveFamilies)
	}
}

func TestClientCredentials(t *testing.T) {
	h := newHarness(t, nil)
	r := h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}})
	if r.status != http.StatusOK || r.num("expires_in") != 20 {
		t.Fatalf("client_credentials: %d %s", r.status, r.raw)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Error("client_credentials returned a refresh token (RFC 6749 §4.4.3)")
	}
	if _, ok := r.body["refresh_expires_in"]; ok {
		t.Error("client_credentials returned refresh_expires_in")
	}
	_, claims := h.parseAT(r.str("access_token"))
	if claims["sub"] != "service-account-"+jobClient || claims["azp"] != jobClient {
		t.Errorf("claims %v", claims)
	}
	h.wantRecords(r.str("access_token"), http.StatusOK, "")
	wantOAuthError(t, h.token(jobClient, "nope", url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client", "")
}

func TestRefreshRotates(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	rt1 := p.str("refresh_token")
	h.clk.Step(10 * time.Second)
	r := h.mustRefresh(rt1)
	rt2, at2 := r.str("refresh_token"), r.str("access_token")
	if rt2 == "" || rt2 == rt1 || at2 == p.str("access_token") {
		t.Fatal("refresh did not rotate")
	}
	if r.num("expires_in") != 20 || r.num("refresh_expires_in") != 600 {
		t.Errorf("refresh response %s", r.raw)
	}
	if _, claims := h.parseAT(at2); claims["sub"] != alice {
		t.Errorf("claims %v", claims)
	}
	if h.s.Active(rt1) {
		t.Error("old refresh token still active after use")
	}
	if !h.s.Active(rt2) || !h.s.Active(at2) {
		t.Error("new pair not active")
	}
	// The old access token is not revoked by a refresh; it expires on its own.
	h.wantRecords(p.str("access_token"), http.StatusOK, "")
	// Sliding refresh TTL: the new RT lives RefreshTokenTTL from now.
	h.clk.Step(599 * time.Second)
	r = h.mustRefresh(rt2)
	// A refresh token bound to another client is refused.
	wantOAuthError(t, h.refresh(uiClient, uiSecret, r.str("refresh_token")), 400, "invalid_grant", "")
	// Expired refresh token.
	h.clk.Step(600 * time.Second)
	wantOAuthError(t, h.refresh(jobClient, jobSecret, r.str("refresh_token")), 400, "invalid_grant", "Token is not active")
	wantOAuthError(t, h.refresh(jobClient, jobSecret, "garbage"), 400, "invalid_grant", "")
	wantOAuthError(t, h.refresh(jobClient, jobSecret, ""), 400, "invalid_request", "")
	c := h.s.Counters()
	if c.Refreshes != 2 || c.RefreshReuse != 0 || c.FamiliesRevoked != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	rt1 := p.str("refresh_token")
	r2 := h.mustRefresh(rt1)
	r3 := h.mustRefresh(r2.str("refresh_token"))
	other := h.password(uiClient, uiSecret, bob, bobPass) // another family, untouched

	wantOAuthError(t, h.refresh(jobClient, jobSecret, rt1), 400, "invalid_grant", "Maximum allowed refresh token reuse exceeded")
	c := h.s.Counters()
	if c.RefreshReuse != 1 || c.FamiliesRevoked != 1 || c.FamiliesRevokedByReason[ReasonReuse] != 1 {
		t.Fatalf("after reuse: RefreshReuse %d FamiliesRevoked %d", c.RefreshReuse, c.FamiliesRevoked)
	}
	// The newest refresh token of the family is dead too, and so are its access tokens.
	if r := h.refresh(jobClient, jobSecret, r3.str("refresh_token")); r.status != 400 || r.str("error") != "invalid_grant" {
		t.Fatalf("newest RT after reuse: %d %s", r.status, r.raw)
	}
	h.wantRecords(r3.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	if h.s.Active(r3.str("refresh_token")) || h.s.Active(r3.str("access_token")) {
		t.Error("family tokens still active")
	}
	// Another family is unaffected.
	h.wantRecords(other.str("access_token"), http.StatusOK, "")
	if r := h.refresh(uiClient, uiSecret, other.str("refresh_token")); r.status != http.StatusOK {
		t.Errorf("other family hurt: %d %s", r.status, r.raw)
	}
	c = h.s.Counters()
	if c.RefreshReuse != 1 || c.FamiliesRevoked != 1 || c.Resource401[Reason401Revoked] != 2 || c.ActiveFamilies != 1 {
		t.Errorf("counters: reuse %d revoked %d 401 %v active %d", c.RefreshReuse, c.FamiliesRevoked, c.Resource401, c.ActiveFamilies)
	}
}

func TestSessionMaxEndsChain(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SessionMax = 60 * time.Second
		c.RefreshTokenTTL = 30 * time.Second
	})
	r := h.mustPassword()
	if r.num("refresh_expires_in") != 30 || r.num("expires_in") != 20 {
		t.Fatalf("login %s", r.raw)
	}
	// Refreshed well in time, every 15s.
	want := []struct{ expiresIn, refreshExpiresIn int64 }{
		{20, 30}, // t=15: 45s left
		{20, 30}, // t=30: 30s left
		{15, 15}, // t=45: 15s left, both capped by the session end
	}
	for i, w := range want {
		h.clk.Step(15 * time.Second)
		r = h.mustRefresh(r.str("refresh_token"))
		if r.num("expires_in") != w.expiresIn || r.num("refresh_expires_in") != w.refreshExpiresIn {
			t.Fatalf("refresh %d: expires_in %d refresh_expires_in %d, want %+v", i, r.num("expires_in"), r.num("refresh_expires_in"), w)
		}
	}
	_, claims := h.parseAT(r.str("access_token"))
	if exp, _ := claims.GetExpirationTime(); !exp.Equal(t0.Add(60 * time.Second)) {
		t.Errorf("exp %v, want the session end", exp)
	}
	h.clk.Step(14 * time.Second) // t=59: still inside
	r = h.mustRefresh(r.str("refresh_token"))
	if r.num("refresh_expires_in") != 1 {
		t.Fatalf("t=59 refresh_expires_in %d", r.num("refresh_expires_in"))
	}
	h.clk.Step(1 * time.Second) // t=60: the session maximum
	wantOAuthError(t, h.refresh(jobClient, jobSecret, r.str("refresh_token")), 400, "invalid_grant", "Session not active")
	c := h.s.Counters()
	if c.SessionMaxEnded != 1 || c.Refreshes != 4 || c.ActiveFamilies != 0 {
		t.Errorf("SessionMaxEnded %d Refreshes %d ActiveFamilies %d", c.SessionMaxEnded, c.Refreshes, c.ActiveFamilies)
	}
	// A fresh login starts a fresh session.
	r = h.mustPassword()
	if r.num("refresh_expires_in") != 30 {
		t.Errorf("new session %s", r.raw)
	}
}

func TestAccessTokenExpiryAndLeeway(t *testing.T) {
	h := newHarness(t, nil) // AT 20s, leeway 2s
	at := h.mustPassword().str("access_token")
	h.clk.Step(21 * time.Second)
	h.wantRecords(at, http.StatusOK, "") // within the leeway
	if h.s.Active(at) {
		t.Error("Active uses no leeway")
	}
	h.clk.Step(2 * time.Second)
	h.wantRecords(at, http.StatusUnauthorized, Reason401Expired)
	h.wantRecords("", http.StatusUnauthorized, Reason401Invalid)
	h.wantRecords("not.a.jwt", http.StatusUnauthorized, Reason401Invalid)
	h.wantRecords(at[:len(at)-4]+"AAAA", http.StatusUnauthorized, Reason401Invalid)
	if st, reason := h.records(http.MethodPost, h.mustPassword().str("access_token")); st != 200 || reason != "" {
		t.Errorf("POST /api/records: %d %s", st, reason)
	}
	c := h.s.Counters()
	if c.ResourceAccepted != 2 || c.Resource401[Reason401Expired] != 1 || c.Resource401[Reason401Invalid] != 3 || c.Resource401Total != 4 {
		t.Errorf("accepted %d 401 %v total %d", c.ResourceAccepted, c.Resource401, c.Resource401Total)
	}
}

func TestKeyRotation(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	oldKid := h.s.KeyID()
	newKid := h.s.RotateSigningKey()
	if newKid == "" || newKid == oldKid || h.s.KeyID() != newKid {
		t.Fatalf("kids old %s new %s current %s", oldKid, newKid, h.s.KeyID())
	}
	keys := h.jwksKeys()
	if len(keys) != 1 || keys[newKid] == nil {
		t.Fatalf("JWKS after rotation: %v", keys)
	}
	h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401UnknownKid)
	// The opaque refresh token survives; its new access token carries the new kid.
	r := h.mustRefresh(p.str("refresh_token"))
	tok, _ := h.parseAT(r.str("access_token"))
	if tok.Header["kid"] != newKid {
		t.Errorf("kid %v", tok.Header["kid"])
	}
	h.wantRecords(r.str("access_token"), http.StatusOK, "")
	h.wantRecords(h.mustPassword().str("access_token"), http.StatusOK, "")
	c := h.s.Counters()
	if c.KeyRotations != 1 || c.Resource401[Reason401UnknownKid] != 1 || c.ResourceAccepted != 2 {
		t.Errorf("KeyRotations %d 401 %v accepted %d", c.KeyRotations, c.Resource401, c.ResourceAccepted)
	}
	// Over HTTP as well.
	ar := h.post("/admin/rotate-key", "", "", nil)
	if ar.status != http.StatusOK || ar.str("kid") == "" || ar.str("kid") != h.s.KeyID() {
		t.Fatalf("/admin/rotate-key: %d %s", ar.status, ar.raw)
	}
	h.wantRecords(r.str("access_token"), http.StatusUnauthorized, Reason401UnknownKid)
}

func TestTokenExchange(t *testing.T) {
	h := newHarness(t, nil)
	user := h.password(uiClient, uiSecret, alice, alicePass)
	x := h.exchange(jobClient, jobSecret, user.str("access_token"))
	if x.status != http.StatusOK || x.str("refresh_token") == "" || x.str("issued_token_type") != TokenTypeAccessToken ||
		x.num("expires_in") != 20 || x.num("refresh_expires_in") != 600 {
		t.Fatalf("exchange: %d %s", x.status, x.raw)
	}
	_, claims := h.parseAT(x.str("access_token"))
	if claims["sub"] != alice || claims["azp"] != jobClient {
		t.Errorf("claims %v", claims)
	}
	h.wantRecords(x.str("access_token"), http.StatusOK, "")
	h.mustRefresh(x.str("refresh_token"))

	// The subject token must be an active access token of this issuer.
	wantOAuthError(t, h.exchange(jobClient, jobSecret, user.str("refresh_token")), 400, "invalid_grant", "")
	wantOAuthError(t, h.exchange(jobClient, jobSecret, "x.y.z"), 400, "invalid_grant", "")
	wantOAuthError(t, h.exchange(jobClient, jobSecret, ""), 400, "invalid_request", "")
	wantOAuthError(t, h.token(jobClient, jobSecret, url.Values{
		"grant_type": {exchangeType}, "subject_token": {user.str("access_token")},
		"subject_token_type": {TokenTypeRefreshToken},
	}), 400, "invalid_request", "")
	h.clk.Step(21 * time.Second)
	wantOAuthError(t, h.exchange(jobClient, jobSecret, user.str("access_token")), 400, "invalid_grant", "")
	if got := h.s.Counters().TokenRequests[GrantKeyTokenExchange]; got[ResultOK] != 1 || got["invalid_grant"] != 3 || got["invalid_request"] != 2 {
		t.Errorf("TokenRequests[token_exchange] = %v", got)
	}
}

func TestExchangedFamilySessionMax(t *testing.T) {
	// Default: the exchanged family shares the user's session and its maximum.
	h := newHarness(t, func(c *Config) { c.SessionMax = 100 * time.Second })
	user := h.password(uiClient, uiSecret, alice, alicePass)
	h.clk.Step(10 * time.Second)
	x := h.exchange(jobClient, jobSecret, user.str("access_token"))
	if x.num("refresh_expires_in") != 90 {
		t.Fatalf("shared-session refresh_expires_in %d", x.num("refresh_expires_in"))
	}
	h.clk.Step(90 * time.Second)
	wantOAuthError(t, h.refresh(jobClient, jobSecret, x.str("refresh_token")), 400, "invalid_grant", "Session not active")

	// ExchangeOwnSession: the maximum counts from the exchange.
	h2 := newHarness(t, func(c *Config) { c.SessionMax = 100 * time.Second; c.ExchangeOwnSession = true })
	user = h2.password(uiClient, uiSecret, alice, alicePass)
	h2.clk.Step(10 * time.Second)
	x = h2.exchange(jobClient, jobSecret, user.str("access_token"))
	if x.num("refresh_expires_in") != 100 {
		t.Fatalf("own-session refresh_expires_in %d", x.num("refresh_expires_in"))
	}
}
