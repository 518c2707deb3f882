package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNewOAuth2Validation(t *testing.T) {
	good := OAuth2Config{TokenURL: "https://idp.example/token", ClientID: "c", ClientSecret: "s"}
	for _, tc := range []struct {
		name  string
		mod   func(*OAuth2Config)
		field string
	}{
		{"no client id", func(c *OAuth2Config) { c.ClientID = "" }, "ClientID"},
		{"no endpoint", func(c *OAuth2Config) { c.TokenURL = "" }, "IssuerURL or TokenURL"},
		{"bad token url", func(c *OAuth2Config) { c.TokenURL = "/token" }, "TokenURL"},
		{"ftp issuer", func(c *OAuth2Config) { c.IssuerURL = "ftp://idp" }, "IssuerURL"},
		{"user info", func(c *OAuth2Config) { c.RevocationURL = "https://u:p@idp/revoke" }, "RevocationURL"},
		{"bad jwks url", func(c *OAuth2Config) { c.JWKSURL = "::" }, "JWKSURL"},
		{"unknown auth", func(c *OAuth2Config) { c.ClientAuth = "tls_client_auth" }, "ClientAuth"},
		{"basic without secret", func(c *OAuth2Config) { c.ClientSecret = "" }, "ClientSecret"},
		{"post without secret", func(c *OAuth2Config) { c.ClientSecret, c.ClientAuth = "", ClientAuthSecretPost }, "ClientSecret"},
		{"jwt without key", func(c *OAuth2Config) { c.ClientAuth = ClientAuthPrivateKeyJWT }, "PrivateKeyPEM"},
		{"jwt bad key", func(c *OAuth2Config) {
			c.ClientAuth, c.PrivateKeyPEM = ClientAuthPrivateKeyJWT, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "PrivateKeyPEM"},
		{"jwt not pem", func(c *OAuth2Config) { c.ClientAuth, c.PrivateKeyPEM = ClientAuthPrivateKeyJWT, []byte("xyz") }, "PrivateKeyPEM"},
		{"negative ttl", func(c *OAuth2Config) { c.DefaultTTL = -time.Second }, "DefaultTTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			_, err := NewOAuth2(context.Background(), cfg)
			e := asError(t, err)
			if e.Class != ClassConfiguration || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want a Configuration error naming %s", err, tc.field)
			}
		})
	}
	o, err := NewOAuth2(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.ClientAuth != ClientAuthSecretBasic || o.Endpoints().Token != good.TokenURL {
		t.Fatalf("defaults: auth %q endpoints %+v", o.cfg.ClientAuth, o.Endpoints())
	}
	// No JWKS: no key ids and no error (opaque tokens, no kid check).
	if kids, err := o.KeyIDs(context.Background()); err != nil || kids != nil {
		t.Fatalf("KeyIDs without JWKS: %v, %v", kids, err)
	}
}

func discoveryDocJSON(issuer, base string) string {
	b, _ := json.Marshal(map[string]any{
		"issuer": issuer, "token_endpoint": base + "/tok", "revocation_endpoint": base + "/rev",
		"introspection_endpoint": base + "/intro", "jwks_uri": base + "/keys", "end_session_endpoint": base + "/logout",
		"grant_types_supported": []string{"client_credentials", "refresh_token"},
	})
	return string(b)
}

func TestDiscover(t *testing.T) {
	ctx := context.Background()
	t.Run("openid-configuration", func(t *testing.T) {
		var base string
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/realms/jobs/.well-known/openid-configuration" {
				respond(200, discoveryDocJSON(base+"/realms/jobs", base))(w, r)
				return
			}
			http.NotFound(w, r)
		})
		base = rec.URL
		ep, err := Discover(ctx, nil, base+"/realms/jobs")
		if err != nil {
			t.Fatal(err)
		}
		want := Endpoints{Issuer: base + "/realms/jobs", Token: base + "/tok", Revocation: base + "/rev", Introspection: base + "/intro",
			JWKS: base + "/keys", EndSession: base + "/logout", DiscoveryURL: base + "/realms/jobs/.well-known/openid-configuration"}
		ep.GrantTypesSupported = nil
		if fmt.Sprint(*ep) != fmt.Sprint(want) {
			t.Fatalf("got %+v\nwant %+v", *ep, want)
		}
		// A trailing slash on either side still matches.
		if _, err := Discover(ctx, nil, base+"/realms/jobs/"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RFC 8414 fallback, path inserted", func(t *testing.T) {
		var base string
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/oauth-authorization-server/tenant1" {
				respond(200, discoveryDocJSON(base+"/tenant1", base))(w, r)
				return
			}
			http.NotFound(w, r)
		})
		base = rec.URL
		ep, err := Discover(ctx, nil, base+"/tenant1")
		if err != nil {
			t.Fatal(err)
		}
		if ep.Token != base+"/tok" || ep.DiscoveryURL != base+"/.well-known/oauth-authorization-server/tenant1" {
			t.Fatalf("got %+v", ep)
		}
		paths := []string{}
		for _, s := range rec.requests() {
			paths = append(paths, s.Path)
		}
		if !slices.Equal(paths, []string{"/tenant1/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/tenant1"}) {
			t.Fatalf("requests %v", paths)
		}
	})
	t.Run("RFC 8414 fallback at the root", func(t *testing.T) {
		var base string
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/oauth-authorization-server" {
				respond(200, discoveryDocJSON(base, base))(w, r)
				return
			}
			http.NotFound(w, r)
		})
		base = rec.URL
		ep, err := Discover(ctx, nil, base)
		if err != nil || ep.Revocation != base+"/rev" {
			t.Fatalf("got %+v, %v", ep, err)
		}
	})
	for _, tc := range []struct {
		name    string
		handler func(base string) http.HandlerFunc
		class   Class
		substr  string
	}{
		{"issuer mismatch", func(base string) http.HandlerFunc {
			return respond(200, discoveryDocJSON("https://evil.example", base))
		}, ClassConfiguration, "names issuer"},
		{"bad JSON", func(string) http.HandlerFunc { return respond(200, "<html>login</html>") }, ClassConfiguration, "not a JSON"},
		{"relative token endpoint", func(base string) http.HandlerFunc {
			return respond(200, `{"issuer":"`+base+`","token_endpoint":"/token"}`)
		}, ClassConfiguration, "token_endpoint"},
		{"nothing anywhere", func(string) http.HandlerFunc { return respond(404, "") }, ClassConfiguration, "no discovery document"},
		{"forbidden", func(string) http.HandlerFunc { return respond(403, "") }, ClassConfiguration, "no discovery document"},
		{"unavailable", func(string) http.HandlerFunc { return respond(503, "", "Retry-After", "3") }, ClassTransient, "503"},
		{"server error", func(string) http.HandlerFunc { return respond(500, "") }, ClassTransient, "500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h http.HandlerFunc
			rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { h(w, r) })
			h = tc.handler(rec.URL)
			_, err := Discover(ctx, nil, rec.URL)
			e := asError(t, err)
			if e.Class != tc.class || !strings.Contains(err.Error(), tc.substr) || e.Op != "discovery" {
				t.Fatalf("got %v, want class %s containing %q", err, tc.class, tc.substr)
			}
			// NewOAuth2 runs discovery and passes the error through.
			_, err = NewOAuth2(ctx, OAuth2Config{IssuerURL: rec.URL, ClientID: "c", ClientSecret: "s"})
			if ClassOf(err) != tc.class {
				t.Fatalf("NewOAuth2: got %v, want class %s", err, tc.class)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		_, err := Discover(ctx, nil, closedURL(t))
		if e := asError(t, err); e.Class != ClassTransient {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("explicit endpoints override discovered ones", func(t *testing.T) {
		var base string
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { respond(200, discoveryDocJSON(base, base))(w, r) })
		base = rec.URL
		o, err := NewOAuth2(ctx, OAuth2Config{IssuerURL: base, RevocationURL: "https://other.example/revoke", ClientID: "c", ClientSecret: "s", AllowPlainHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		ep := o.Endpoints()
		if ep.Token != base+"/tok" || ep.Revocation != "https://other.example/revoke" || ep.JWKS != base+"/keys" {
			t.Fatalf("got %+v", ep)
		}
	})
}

// TestOAuth2TokenResponses runs golden token-endpoint answers through Mint and Refresh.
func TestOAuth2TokenResponses(t *testing.T) {
	const oldRT = "old-refresh-token"
	jwtAT := testJWT(t, "kc-key-1", t0.Add(-time.Hour), 10*time.Minute) // iat/exp far from t0: only exp-iat counts
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		headers []string
		ttl     time.Duration
		// want, when the call succeeds
		access, refresh, typ, kid string
		expires, refreshExpires   time.Duration // from t0; refreshExpires 0 = zero time
		// wantClass for mint and refresh when they fail ("" = success)
		mintClass, refreshClass Class
		code, retryAfter        string
	}{
		{name: "Keycloak", status: 200, body: `{"access_token":"` + jwtAT + `","expires_in":300,"refresh_expires_in":1800,"refresh_token":"new-rt","token_type":"Bearer","not-before-policy":0,"session_state":"abc","scope":"profile email"}`,
			access: jwtAT, refresh: "new-rt", typ: "Bearer", kid: "kc-key-1", expires: 300 * time.Second, refreshExpires: 1800 * time.Second},
		{name: "Keycloak offline (refresh_expires_in 0)", status: 200, body: `{"access_token":"at","expires_in":60,"refresh_expires_in":0,"refresh_token":"offline-rt","token_type":"Bearer"}`,
			access: "at", refresh: "offline-rt", typ: "Bearer", expires: time.Minute},
		{name: "Hydra", status: 200, body: `{"access_token":"ory_at_x.y","expires_in":3599,"id_token":"i","refresh_token":"ory_rt_a.b","scope":"openid offline","token_type":"bearer"}`,
			access: "ory_at_x.y", refresh: "ory_rt_a.b", typ: "Bearer", expires: 3599 * time.Second},
		{name: "expires_in as a string", status: 200, body: `{"access_token":"at","expires_in":"120","token_type":"Bearer"}`,
			access: "at", refresh: oldRT, typ: "Bearer", expires: 2 * time.Minute},
		{name: "no refresh token keeps the old one", status: 200, body: `{"access_token":"at","expires_in":10}`,
			access: "at", refresh: oldRT, typ: "Bearer", expires: 10 * time.Second},
		{name: "JWT exp-iat when expires_in is absent", status: 200, body: `{"access_token":"` + jwtAT + `","token_type":"Bearer"}`,
			access: jwtAT, refresh: oldRT, typ: "Bearer", kid: "kc-key-1", expires: 10 * time.Minute},
		{name: "default TTL for an opaque token", status: 200, body: `{"access_token":"opaque","token_type":"Bearer"}`, ttl: 7 * time.Minute,
			access: "opaque", refresh: oldRT, typ: "Bearer", expires: 7 * time.Minute},
		{name: "token exchange", status: 200, body: `{"access_token":"xat","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"N_A","expires_in":30}`,
			access: "xat", refresh: oldRT, typ: "N_A", expires: 30 * time.Second},
		{name: "form-encoded (GitHub style)", status: 200, body: "access_token=fat&token_type=bearer&expires_in=45&refresh_token=frt", headers: []string{"Content-Type", "application/x-www-form-urlencoded"},
			access: "fat", refresh: "frt", typ: "Bearer", expires: 45 * time.Second},
		{name: "201 is a success too", status: 201, body: `{"access_token":"at","expires_in":5}`, access: "at", refresh: oldRT, typ: "Bearer", expires: 5 * time.Second},

		// Unusable successes: a mint gets the same answer again (Configuration); a refresh
		// may have rotated the refresh token (OutcomeUnknown).
		{name: "no lifetime anywhere", status: 200, body: `{"access_token":"opaque"}`, mintClass: ClassConfiguration, refreshClass: ClassOutcomeUnknown},
		{name: "no access token", status: 200, body: `{"token_type":"Bearer","expires_in":5,"refresh_token":"rt"}`, mintClass: ClassConfiguration, refreshClass: ClassOutcomeUnknown},
		{name: "not JSON", status: 200, body: `<html>proxy login</html>`, headers: []string{"Content-Type", "text/html"}, mintClass: ClassConfiguration, refreshClass: ClassOutcomeUnknown},
		{name: "negative expires_in", status: 200, body: `{"access_token":"at","expires_in":-5}`, mintClass: ClassConfiguration, refreshClass: ClassOutcomeUnknown},
		{name: "error member in a 200", status: 200, body: `{"error":"invalid_grant","error_description":"Stale token"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain, code: "invalid_grant"},

		// Dead chains.
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain, code: "invalid_grant"},
		{name: "Token is not active", status: 400, body: `{"error":"invalid_grant","error_description":"Token is not active"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain, code: "invalid_grant"},
		{name: "Session not active", status: 400, body: `{"error":"invalid_grant","error_description":"Session not active"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},
		{name: "Session doesn't have required client", status: 400, body: `{"error":"invalid_grant","error_description":"Session doesn't have required client"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},
		{name: "reuse exceeded", status: 400, body: `{"error":"invalid_grant","error_description":"Maximum allowed refresh token reuse exceeded"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},
		{name: "Stale token", status: 400, body: `{"error":"invalid_grant","error_description":"Stale token"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},
		{name: "Keycloak description under another code", status: 400, body: `{"error":"invalid_request","error_description":"Session not active"}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},
		{name: "fosite token_inactive", status: 401, body: `{"error":"token_inactive","error_description":"Token is inactive because it is malformed, expired or otherwise invalid."}`, mintClass: ClassDeadChain, refreshClass: ClassDeadChain},

		// Configuration.
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}`, headers: []string{"WWW-Authenticate", "Basic"}, mintClass: ClassConfiguration, refreshClass: ClassConfiguration, code: "invalid_client"},
		{name: "unauthorized_client", status: 400, body: `{"error":"unauthorized_client"}`, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "unsupported_grant_type", status: 400, body: `{"error":"unsupported_grant_type"}`, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "invalid_scope", status: 400, body: `{"error":"invalid_scope","error_description":"Scope offline_access not allowed for token exchange"}`, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "400 without a body", status: 400, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "400 with an unknown code", status: 400, body: `{"error":"something_new"}`, mintClass: ClassConfiguration, refreshClass: ClassConfiguration, code: "something_new"},
		{name: "401 without a body", status: 401, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "404", status: 404, body: "not found", mintClass: ClassConfiguration, refreshClass: ClassConfiguration},
		{name: "redirect is not followed", status: 307, headers: []string{"Location", "https://elsewhere.example/token"}, mintClass: ClassConfiguration, refreshClass: ClassConfiguration},

		// Transient.
		{name: "500", status: 500, body: "boom", mintClass: ClassTransient, refreshClass: ClassTransient},
		{name: "502 HTML", status: 502, body: "<html>bad gateway</html>", mintClass: ClassTransient, refreshClass: ClassTransient},
		{name: "503 Retry-After seconds", status: 503, headers: []string{"Retry-After", "7"}, mintClass: ClassTransient, refreshClass: ClassTransient, retryAfter: "7s"},
		{name: "429 Retry-After date", status: 429, headers: []string{"Date", "Mon, 01 Jan 2035 00:00:00 GMT", "Retry-After", "Mon, 01 Jan 2035 00:01:30 GMT"}, mintClass: ClassTransient, refreshClass: ClassTransient, retryAfter: "1m30s"},
		{name: "Retry-After capped", status: 503, headers: []string{"Retry-After", "999999"}, mintClass: ClassTransient, refreshClass: ClassTransient, retryAfter: "1h0m0s"},
		{name: "temporarily_unavailable", status: 400, body: `{"error":"temporarily_unavailable"}`, mintClass: ClassTransient, refreshClass: ClassTransient},
		// A gateway timed out waiting for the issuer, which may have acted.
		{name: "504", status: 504, mintClass: ClassOutcomeUnknown, refreshClass: ClassOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, respond(tc.status, tc.body, tc.headers...))
			o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.DefaultTTL = tc.ttl })
			for _, op := range []string{"mint", "refresh"} {
				var ts *TokenSet
				var err error
				want := tc.mintClass
				if op == "mint" {
					ts, err = o.Mint(context.Background(), Grant{Type: GrantRefreshToken, RefreshToken: oldRT})
					// A refresh-token redemption consumes its input like a refresh.
					if want == ClassConfiguration && tc.refreshClass == ClassOutcomeUnknown {
						want = ClassOutcomeUnknown
					}
					// client_credentials has no old refresh token to keep.
					ccRefresh := tc.refresh
					if ccRefresh == oldRT {
						ccRefresh = ""
					}
					ts2, err2 := o.Mint(context.Background(), Grant{Type: GrantClientCredentials})
					checkTokenResult(t, "mint client_credentials", ts2, err2, tc.mintClass, tc.code, tc.retryAfter,
						tc.access, ccRefresh, tc.typ, tc.kid, tc.expires, tc.refreshExpires)
				} else {
					ts, err = o.Refresh(context.Background(), oldRT)
					want = tc.refreshClass
				}
				checkTokenResult(t, op, ts, err, want, tc.code, tc.retryAfter, tc.access, tc.refresh, tc.typ, tc.kid, tc.expires, tc.refreshExpires)
			}
		})
	}
}

func checkTokenResult(t *testing.T, op string, ts *TokenSet, err error, wantClass Class, code, retryAfter, access, refresh, typ, kid string,
	expires, refreshExpires time.Duration) {
	t.Helper()
	if wantClass != "" {
		e := asError(t, err)
		if e.Class != wantClass {
			t.Fatalf("%s: got %v, want class %s", op, err, wantClass)
		}
		if code != "" && e.Code != code {
			t.Fatalf("%s: code %q, want %q", op, e.Code, code)
		}
		if retryAfter != "" && e.RetryAfter.String() != retryAfter {
			t.Fatalf("%s: Retry-After %s, want %s", op, e.RetryAfter, retryAfter)
		}
		if ts != nil {
			t.Fatalf("%s: a token set with an error", op)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if ts.AccessToken != access || ts.RefreshToken != refresh || ts.TokenType != typ || ts.KeyID != kid {
		t.Fatalf("%s: got %s access-ok=%v refresh-ok=%v", op, ts, ts.AccessToken == access, ts.RefreshToken == refresh)
	}
	if !ts.IssuedAt.Equal(t0) || !ts.ExpiresAt.Equal(t0.Add(expires)) {
		t.Fatalf("%s: issued %s expires %s, want %s and %s", op, ts.IssuedAt, ts.ExpiresAt, t0, t0.Add(expires))
	}
	wantRefreshExp := time.Time{}
	if refreshExpires > 0 {
		wantRefreshExp = t0.Add(refreshExpires)
	}
	if !ts.RefreshExpiresAt.Equal(wantRefreshExp) {
		t.Fatalf("%s: refresh expires %s, want %s", op, ts.RefreshExpiresAt, wantRefreshExp)
	}
}

// TestOAuth2ExpiryFollowsTheInjectedClock: receipt time is the clock's time when the
// answer arrives, whatever the issuer's clock says.
func TestOAuth2ExpiryFollowsTheInjectedClock(t *testing.T) {
	clk := fakeClock()
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		clk.SetTime(t0.Add(2 * time.Second)) // the answer "arrives" 2s later
		w.Header().Set("Date", "Mon, 01 Jan 2001 00:00:00 GMT")
		respond(200, `{"access_token":"at","expires_in":180}`)(w, r)
	})
	o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.Clock = clk })
	ts, err := o.Mint(context.Background(), Grant{Type: GrantClientCredentials})
	if err != nil {
		t.Fatal(err)
	}
	if !ts.IssuedAt.Equal(t0.Add(2*time.Second)) || !ts.ExpiresAt.Equal(t0.Add(182*time.Second)) {
		t.Fatalf("got %s", ts)
	}
}

func TestOAuth2Grants(t *testing.T) {
	ok := respond(200, `{"access_token":"at","expires_in":60,"refresh_token":"rt"}`)
	for _, tc := range []struct {
		name  string
		cfg   func(*OAuth2Config)
		grant Grant
		want  url.Values
	}{
		{"client_credentials with config scopes and audience", func(c *OAuth2Config) {
			c.Scopes, c.Audience = []string{"a", "b"}, []string{"api1", "api2"}
		}, Grant{Type: GrantClientCredentials},
			url.Values{"grant_type": {"client_credentials"}, "scope": {"a b"}, "audience": {"api1", "api2"}}},
		{"grant scopes win over config", func(c *OAuth2Config) { c.Scopes = []string{"a"} },
			Grant{Type: GrantClientCredentials, Scopes: []string{"x"}},
			url.Values{"grant_type": {"client_credentials"}, "scope": {"x"}}},
		{"password", nil, Grant{Type: GrantPassword, Username: "sys-user", Password: "pw&=+", Scopes: []string{"offline_access"}},
			url.Values{"grant_type": {"password"}, "username": {"sys-user"}, "password": {"pw&=+"}, "scope": {"offline_access"}}},
		{"token exchange defaults", nil, Grant{Type: GrantTokenExchange, SubjectToken: "user-at"},
			url.Values{"grant_type": {GrantTypeTokenExchange}, "subject_token": {"user-at"}, "subject_token_type": {TokenTypeAccessToken}}},
		{"token exchange full", nil, Grant{Type: GrantTokenExchange, SubjectToken: "user-at", SubjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
			RequestedTokenType: TokenTypeRefreshToken, Audience: []string{"job-client"}, Scopes: []string{"openid", "data"}},
			url.Values{"grant_type": {GrantTypeTokenExchange}, "subject_token": {"user-at"}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
				"requested_token_type": {TokenTypeRefreshToken}, "audience": {"job-client"}, "scope": {"openid data"}}},
		{"refresh token redemption", nil, Grant{Type: GrantRefreshToken, RefreshToken: "handed-over"},
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"handed-over"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, ok)
			o := newTestOAuth2(t, rec.URL, tc.cfg)
			if _, err := o.Mint(context.Background(), tc.grant); err != nil {
				t.Fatal(err)
			}
			s := rec.last(t)
			if s.Method != http.MethodPost || s.Path != "/token" || s.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				t.Fatalf("request %s %s %q", s.Method, s.Path, s.Header.Get("Content-Type"))
			}
			if fmt.Sprint(s.Form) != fmt.Sprint(tc.want) {
				t.Fatalf("form %v\nwant %v", s.Form, tc.want)
			}
		})
	}
	t.Run("refresh sends no scope", func(t *testing.T) {
		rec := newRecorder(t, ok)
		o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.Scopes = []string{"a"} })
		if _, err := o.Refresh(context.Background(), "the-rt"); err != nil {
			t.Fatal(err)
		}
		if f := rec.last(t).Form; fmt.Sprint(f) != fmt.Sprint(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"the-rt"}}) {
			t.Fatalf("form %v", f)
		}
	})
	t.Run("bad grants make no request", func(t *testing.T) {
		rec := newRecorder(t, ok)
		o := newTestOAuth2(t, rec.URL, nil)
		for _, g := range []Grant{{Type: "Magic"}, {Type: GrantPassword, Username: "u"}, {Type: GrantTokenExchange}, {Type: GrantRefreshToken}} {
			_, err := o.Mint(context.Background(), g)
			if e := asError(t, err); e.Class != ClassConfiguration {
				t.Fatalf("%v: got %v", g, err)
			}
		}
		_, err := o.Mint(context.Background(), Grant{Type: "Magic"})
		if !strings.Contains(err.Error(), "Magic") {
			t.Fatalf("the error does not name the grant: %v", err)
		}
		if _, err := o.Refresh(context.Background(), ""); ClassOf(err) != ClassConfiguration {
			t.Fatalf("empty refresh token: %v", err)
		}
		if n := len(rec.requests()); n != 0 {
			t.Fatalf("%d requests sent", n)
		}
	})
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestOAuth2ClientAuth(t *testing.T) {
	ok := respond(200, `{"access_token":"at","expires_in":60}`)
	const id, secret = "job client/1", "s3cr:et+&%="
	t.Run("client_secret_basic form-encodes id and secret", func(t *testing.T) {
		rec := newRecorder(t, ok)
		o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.ClientID, c.ClientSecret = id, secret })
		if _, err := o.Mint(context.Background(), Grant{Type: GrantClientCredentials}); err != nil {
			t.Fatal(err)
		}
		s := rec.last(t)
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s.Header.Get("Authorization"), "Basic "))
		if string(raw) != url.QueryEscape(id)+":"+url.QueryEscape(secret) {
			t.Fatalf("basic credentials %q", raw)
		}
		if s.Form.Has("client_id") || s.Form.Has("client_secret") {
			t.Fatalf("credentials in the form too: %v", s.Form)
		}
	})
	t.Run("client_secret_post", func(t *testing.T) {
		rec := newRecorder(t, ok)
		o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.ClientID, c.ClientSecret, c.ClientAuth = id, secret, ClientAuthSecretPost })
		if _, err := o.Refresh(context.Background(), "rt"); err != nil {
			t.Fatal(err)
		}
		s := rec.last(t)
		if s.Header.Get("Authorization") != "" || s.Form.Get("client_id") != id || s.Form.Get("client_secret") != secret {
			t.Fatalf("auth header %q form %v", s.Header.Get("Authorization"), s.Form)
		}
	})
	t.Run("none", func(t *testing.T) {
		rec := newRecorder(t, ok)
		o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.ClientSecret, c.ClientAuth = "", ClientAuthNone })
		if _, err := o.Refresh(context.Background(), "rt"); err != nil {
			t.Fatal(err)
		}
		s := rec.last(t)
		if s.Header.Get("Authorization") != "" || s.Form.Get("client_id") != "job-client" || s.Form.Has("client_secret") {
			t.Fatalf("auth header %q form %v", s.Header.Get("Authorization"), s.Form)
		}
	})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	for _, tc := range []struct {
		name string
		pem  []byte
		kid  string
		alg  string
		pub  any
	}{
		{"RSA PKCS#8", pemKey(t, rsaKey), "key-1", "RS256", &rsaKey.PublicKey},
		{"RSA PKCS#1 without kid", rsaPKCS1, "", "RS256", &rsaKey.PublicKey},
		{"ECDSA P-256", pemKey(t, ecKey), "ec-1", "ES256", &ecKey.PublicKey},
	} {
		t.Run("private_key_jwt "+tc.name, func(t *testing.T) {
			rec := newRecorder(t, ok)
			o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) {
				c.ClientSecret, c.ClientAuth, c.PrivateKeyPEM, c.PrivateKeyID = "", ClientAuthPrivateKeyJWT, tc.pem, tc.kid
			})
			for range 2 {
				if _, err := o.Mint(context.Background(), Grant{Type: GrantClientCredentials}); err != nil {
					t.Fatal(err)
				}
			}
			var jtis []string
			for _, s := range rec.requests() {
				if s.Header.Get("Authorization") != "" || s.Form.Get("client_id") != "job-client" ||
					s.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					t.Fatalf("request header %q form %v", s.Header.Get("Authorization"), s.Form)
				}
				claims := jwt.MapClaims{}
				tok, err := jwt.ParseWithClaims(s.Form.Get("client_assertion"), claims, func(*jwt.Token) (any, error) { return tc.pub, nil },
					jwt.WithValidMethods([]string{tc.alg}), jwt.WithTimeFunc(func() time.Time { return t0 }),
					jwt.WithIssuer("job-client"), jwt.WithSubject("job-client"), jwt.WithAudience(rec.URL+"/token"), jwt.WithExpirationRequired())
				if err != nil {
					t.Fatalf("assertion does not verify: %v", err)
				}
				if kid, _ := tok.Header["kid"].(string); kid != tc.kid {
					t.Fatalf("kid %q, want %q", kid, tc.kid)
				}
				exp, _ := claims.GetExpirationTime()
				iat, _ := claims.GetIssuedAt()
				if !iat.Equal(t0) || exp.Sub(iat.Time) != time.Minute {
					t.Fatalf("iat %v exp %v", iat, exp)
				}
				jti, _ := claims["jti"].(string)
				if jti == "" || slices.Contains(jtis, jti) {
					t.Fatalf("jti %q not fresh (%v)", jti, jtis)
				}
				jtis = append(jtis, jti)
			}
		})
	}
	t.Run("small RSA keys are refused", func(t *testing.T) {
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewOAuth2(context.Background(), OAuth2Config{TokenURL: "https://idp/token", ClientID: "c", ClientAuth: ClientAuthPrivateKeyJWT, PrivateKeyPEM: pemKey(t, small)})
		if ClassOf(err) != ClassConfiguration || !strings.Contains(err.Error(), "2048") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestOAuth2Revoke(t *testing.T) {
	ctx := context.Background()
	t.Run("refresh token first, then access token, with hints", func(t *testing.T) {
		rec := newRecorder(t, respond(200, ""))
		o := newTestOAuth2(t, rec.URL, nil)
		if err := o.Revoke(ctx, Revocation{AccessToken: "the-at", RefreshToken: "the-rt"}); err != nil {
			t.Fatal(err)
		}
		reqs := rec.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		for i, want := range []url.Values{{"token": {"the-rt"}, "token_type_hint": {"refresh_token"}}, {"token": {"the-at"}, "token_type_hint": {"access_token"}}} {
			if reqs[i].Path != "/revoke" || fmt.Sprint(reqs[i].Form) != fmt.Sprint(want) || !strings.HasPrefix(reqs[i].Header.Get("Authorization"), "Basic ") {
				t.Fatalf("request %d: %s %v", i, reqs[i].Path, reqs[i].Form)
			}
		}
	})
	t.Run("replaced chains after the current pair, each as a refresh token", func(t *testing.T) {
		rec := newRecorder(t, respond(200, ""))
		o := newTestOAuth2(t, rec.URL, nil)
		if err := o.Revoke(ctx, Revocation{AccessToken: "the-at", RefreshToken: "the-rt", Replaced: []string{"old-rt-1", "old-rt-2"}}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rec.requests() {
			got = append(got, r.Form.Get("token")+"/"+r.Form.Get("token_type_hint"))
		}
		if want := []string{"the-rt/refresh_token", "the-at/access_token", "old-rt-1/refresh_token", "old-rt-2/refresh_token"}; !slices.Equal(got, want) {
			t.Fatalf("revoked %q, want %q", got, want)
		}
		rec = newRecorder(t, respond(200, ""))
		o = newTestOAuth2(t, rec.URL, nil)
		if err := o.Revoke(ctx, Revocation{Replaced: []string{"old-rt-1"}}); err != nil {
			t.Fatal(err)
		}
		if reqs := rec.requests(); len(reqs) != 1 || reqs[0].Form.Get("token") != "old-rt-1" {
			t.Fatalf("only a replaced chain left: requests %v", reqs)
		}
	})
	t.Run("only what is given", func(t *testing.T) {
		rec := newRecorder(t, respond(200, ""))
		o := newTestOAuth2(t, rec.URL, nil)
		if err := o.Revoke(ctx, Revocation{AccessToken: "the-at"}); err != nil {
			t.Fatal(err)
		}
		if err := o.Revoke(ctx, Revocation{}); err != nil {
			t.Fatal(err)
		}
		if reqs := rec.requests(); len(reqs) != 1 || reqs[0].Form.Get("token_type_hint") != "access_token" {
			t.Fatalf("requests %v", reqs)
		}
	})
	for _, tc := range []struct {
		name  string
		h     http.HandlerFunc
		class Class // "" = success
		ra    time.Duration
	}{
		{"unknown token is 200", respond(200, `{"error":"invalid_token"}`), "", 0},
		{"session already gone", respond(400, `{"error":"invalid_grant","error_description":"Session not active"}`), "", 0},
		{"access tokens not revocable", func(w http.ResponseWriter, r *http.Request) {
			if r.PostFormValue("token_type_hint") == "access_token" {
				respond(400, `{"error":"unsupported_token_type"}`)(w, r)
			}
		}, "", 0},
		{"503 with Retry-After", respond(503, "", "Retry-After", "12"), ClassTransient, 12 * time.Second},
		{"invalid_client", respond(401, `{"error":"invalid_client"}`), ClassConfiguration, 0},
		{"504 is retried (revocation is idempotent)", respond(504, ""), ClassTransient, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, tc.h)
			o := newTestOAuth2(t, rec.URL, nil)
			err := o.Revoke(ctx, Revocation{AccessToken: "at", RefreshToken: "rt"})
			if tc.class == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e := asError(t, err)
			if e.Class != tc.class || e.RetryAfter != tc.ra || e.Op != "revoke" {
				t.Fatalf("got %v", err)
			}
			if len(rec.requests()) != 2 {
				t.Fatalf("both tokens should be attempted, %d requests", len(rec.requests()))
			}
		})
	}
	t.Run("no revocation endpoint", func(t *testing.T) {
		o := newTestOAuth2(t, "https://idp.example", func(c *OAuth2Config) { c.RevocationURL = "" })
		err := o.Revoke(ctx, Revocation{RefreshToken: "rt"})
		if e := asError(t, err); e.Class != ClassConfiguration || !strings.Contains(err.Error(), "revocation endpoint") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("network errors are transient", func(t *testing.T) {
		rec := newRecorder(t, hijack(""))
		o := newTestOAuth2(t, rec.URL, nil)
		if err := o.Revoke(ctx, Revocation{RefreshToken: "rt"}); ClassOf(err) != ClassTransient {
			t.Fatalf("got %v", err)
		}
	})
}

func TestOAuth2KeyIDs(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder(t, respond(200, `{"keys":[{"kid":"a","kty":"RSA","use":"sig"},{"kid":"b","kty":"EC"},{"kty":"RSA"},{"kid":"enc-1","use":"enc"}]}`))
	o := newTestOAuth2(t, rec.URL, nil)
	kids, err := o.KeyIDs(ctx)
	if err != nil || !slices.Equal(kids, []string{"a", "b"}) {
		t.Fatalf("got %v, %v", kids, err)
	}
	if s := rec.last(t); s.Method != http.MethodGet || s.Path != "/jwks" {
		t.Fatalf("request %s %s", s.Method, s.Path)
	}
	for _, tc := range []struct {
		h     http.HandlerFunc
		class Class
	}{
		{respond(200, `not json`), ClassConfiguration},
		{respond(404, ``), ClassConfiguration},
		{respond(500, ``), ClassTransient},
		{hijack(""), ClassTransient},
	} {
		rec := newRecorder(t, tc.h)
		o := newTestOAuth2(t, rec.URL, nil)
		_, err := o.KeyIDs(ctx)
		if e := asError(t, err); e.Class != tc.class || e.Op != "jwks" {
			t.Fatalf("got %v, want %s", err, tc.class)
		}
	}
}

// TestOAuth2NetworkFailures: before the request is written the failure is Transient;
// after, a token request's outcome is unknown.
func TestOAuth2NetworkFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     func(t *testing.T) string
		timeout time.Duration
		cancel  bool
		class   Class
	}{
		{"connection refused", closedURL, 0, false, ClassTransient},
		{"context cancelled before sending", func(t *testing.T) string { t.Helper(); return newRecorder(t, respond(200, "{}")).URL }, 0, true, ClassTransient},
		{"connection closed after the request", func(t *testing.T) string { t.Helper(); return newRecorder(t, hijack("")).URL }, 0, false, ClassOutcomeUnknown},
		{"client timeout after sending", func(t *testing.T) string { t.Helper(); return newRecorder(t, stall(t)).URL }, time.Second, false, ClassOutcomeUnknown},
		{"body cut short", func(t *testing.T) string {
			t.Helper()
			return newRecorder(t, hijack("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"access_token\":\"a")).URL
		}, 0, false, ClassOutcomeUnknown},
		{"garbage instead of HTTP", func(t *testing.T) string { t.Helper(); return newRecorder(t, hijack("SSH-2.0-OpenSSH\r\n")).URL }, 0, false, ClassOutcomeUnknown},
		{"5xx body cut short", func(t *testing.T) string {
			t.Helper()
			return newRecorder(t, hijack("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 50\r\n\r\nbusy")).URL
		}, 0, false, ClassTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.url(t)
			o := newTestOAuth2(t, base, func(c *OAuth2Config) {
				if tc.timeout > 0 {
					c.HTTPClient = &http.Client{Timeout: tc.timeout}
				}
			})
			ctx := context.Background()
			if tc.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			_, err := o.Refresh(ctx, "rt")
			if e := asError(t, err); e.Class != tc.class || e.Op != "refresh" {
				t.Fatalf("got %v, want %s", err, tc.class)
			}
		})
	}
}

// TestOAuth2TokenExchangeIssuingOnlyARefreshToken: an RFC 8693 answer whose access_token
// member is a refresh token is redeemed once, so no refresh token reaches the workers.
func TestOAuth2TokenExchangeIssuingOnlyARefreshToken(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("grant_type") == GrantTypeTokenExchange {
			respond(200, `{"access_token":"exchanged-rt","issued_token_type":"`+TokenTypeRefreshToken+`","token_type":"N_A"}`)(w, r)
			return
		}
		respond(200, `{"access_token":"job-at","expires_in":60,"token_type":"Bearer"}`)(w, r)
	})
	o := newTestOAuth2(t, rec.URL, nil)
	ts, err := o.Mint(context.Background(), Grant{Type: GrantTokenExchange, SubjectToken: "user-at", RequestedTokenType: TokenTypeRefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	if ts.AccessToken != "job-at" || ts.RefreshToken != "exchanged-rt" || !ts.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("got %s", ts)
	}
	reqs := rec.requests()
	if len(reqs) != 2 || reqs[1].Form.Get("grant_type") != "refresh_token" || reqs[1].Form.Get("refresh_token") != "exchanged-rt" {
		t.Fatalf("requests %v", reqs)
	}
	// The same answer to a plain refresh is not redeemed again: its outcome is unknown.
	rec2 := newRecorder(t, respond(200, `{"access_token":"x","issued_token_type":"`+TokenTypeRefreshToken+`"}`))
	_, err = newTestOAuth2(t, rec2.URL, nil).Refresh(context.Background(), "rt")
	if ClassOf(err) != ClassOutcomeUnknown || len(rec2.requests()) != 1 {
		t.Fatalf("got %v after %d requests", err, len(rec2.requests()))
	}
	// An exchange that also returns a refresh token (Keycloak) is used as is.
	rec3 := newRecorder(t, respond(200, `{"access_token":"kc-at","refresh_token":"kc-rt","expires_in":30,"issued_token_type":"`+TokenTypeRefreshToken+`"}`))
	ts, err = newTestOAuth2(t, rec3.URL, nil).Mint(context.Background(), Grant{Type: GrantTokenExchange, SubjectToken: "user-at", RequestedTokenType: TokenTypeRefreshToken})
	if err != nil || ts.AccessToken != "kc-at" || ts.RefreshToken != "kc-rt" || len(rec3.requests()) != 1 {
		t.Fatalf("got %v, %v", ts, err)
	}
}

// TestOAuth2CancelledAfterSending: a caller's cancellation after the issuer got the
// request is OutcomeUnknown, and the scrubbed cause still matches context.Canceled. The
// cancellation waits for the request's arrival, so timing cannot flip the class.
func TestOAuth2CancelledAfterSending(t *testing.T) {
	h, arrived := stallNotify(t)
	rec := newRecorder(t, h)
	o := newTestOAuth2(t, rec.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()
	_, err := o.Refresh(ctx, "rt")
	if ClassOf(err) != ClassOutcomeUnknown || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
