package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newTestFOLIO(t *testing.T, base string, mod func(*FOLIOConfig)) *FOLIO {
	t.Helper()
	cfg := FOLIOConfig{BaseURL: base + "/", Tenant: "diku", Clock: fakeClock(), AllowPlainHTTP: true}
	if mod != nil {
		mod(&cfg)
	}
	f, err := NewFOLIO(cfg)
	if err != nil {
		t.Fatalf("NewFOLIO: %v", err)
	}
	return f
}

// serverNow is the FOLIO server's clock in the golden answers: 5 minutes ahead of the
// operator's (t0), which must not matter.
var serverNow = t0.Add(5 * time.Minute)

// folioAnswer writes a login/refresh success as mod-login-keycloak does (cookies with
// SameSite=None, Secure, HttpOnly, Max-Age) and a body with both expirations.
func folioAnswer(at, rt string, atMaxAge, rtMaxAge int, date bool, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		ck := func(name, v, path string, maxAge int) string {
			s := name + "=" + v + "; Path=" + path + "; Secure; HttpOnly; SameSite=None"
			if maxAge > 0 {
				s += "; Max-Age=" + itoa(maxAge)
			}
			return s
		}
		if at != "" {
			h.Add("Set-Cookie", ck("folioAccessToken", at, "/", atMaxAge))
		}
		if rt != "" {
			h.Add("Set-Cookie", ck("folioRefreshToken", rt, "/authn", rtMaxAge))
		}
		if date {
			h.Set("Date", serverNow.Format(http.TimeFormat))
		} else {
			h["Date"] = nil // suppress the server's automatic Date
		}
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(body))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func expiryBody(access, refresh time.Time) string {
	return `{"accessTokenExpiration":"` + access.Format(time.RFC3339Nano) + `","refreshTokenExpiration":"` + refresh.Format(time.RFC3339) + `"}`
}

func TestNewFOLIOValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg   FOLIOConfig
		field string
	}{
		{FOLIOConfig{Tenant: "t"}, "BaseURL"},
		{FOLIOConfig{BaseURL: "folio.example", Tenant: "t"}, "BaseURL"},
		{FOLIOConfig{BaseURL: "https://folio.example?x=1", Tenant: "t"}, "BaseURL"},
		{FOLIOConfig{BaseURL: "https://folio.example"}, "Tenant"},
		{FOLIOConfig{BaseURL: "https://folio.example", Tenant: "a\nb"}, "Tenant"},
		{FOLIOConfig{BaseURL: "https://folio.example", Tenant: "t", DefaultTTL: -1}, "DefaultTTL"},
	} {
		_, err := NewFOLIO(tc.cfg)
		if e := asError(t, err); e.Class != ClassConfiguration || !strings.Contains(err.Error(), tc.field) {
			t.Fatalf("%+v: got %v, want a Configuration error naming %s", tc.cfg, err, tc.field)
		}
	}
}

func TestFOLIOLogin(t *testing.T) {
	at := testJWT(t, "folio-kid", t0, 10*time.Minute)
	body := expiryBody(serverNow.Add(10*time.Minute), serverNow.Add(7*24*time.Hour))
	rec := newRecorder(t, folioAnswer(at, "rt-1", 600, 604800, true, body))
	f := newTestFOLIO(t, rec.URL, nil)
	ts, err := f.Mint(context.Background(), Grant{Type: GrantPassword, Username: "sys", Password: `p"w`})
	if err != nil {
		t.Fatal(err)
	}
	s := rec.last(t)
	var sent map[string]string
	if err := json.Unmarshal([]byte(s.Body), &sent); err != nil {
		t.Fatal(err)
	}
	if s.Method != http.MethodPost || s.Path != "/authn/login-with-expiry" || s.Header.Get("X-Okapi-Tenant") != "diku" ||
		s.Header.Get("Content-Type") != "application/json" || sent["username"] != "sys" || sent["password"] != `p"w` || len(sent) != 2 {
		t.Fatalf("request %s %s tenant=%q body=%v", s.Method, s.Path, s.Header.Get("X-Okapi-Tenant"), sent)
	}
	if ts.AccessToken != at || ts.RefreshToken != "rt-1" || ts.TokenType != "Bearer" || ts.KeyID != "folio-kid" {
		t.Fatalf("got %s", ts)
	}
	// Relative to the server's Date: the 5-minute skew does not shorten the lifetime.
	if !ts.IssuedAt.Equal(t0) || !ts.ExpiresAt.Equal(t0.Add(10*time.Minute)) || !ts.RefreshExpiresAt.Equal(t0.Add(7*24*time.Hour)) {
		t.Fatalf("got issued %s expires %s refresh %s", ts.IssuedAt, ts.ExpiresAt, ts.RefreshExpiresAt)
	}
}

func TestFOLIOExpirySources(t *testing.T) {
	opaque := "opaque-at"
	for _, tc := range []struct {
		name          string
		at            string
		atAge, rtAge  int
		date          bool
		body          string
		ttl           time.Duration
		expires       time.Duration // from t0
		refreshExpire time.Duration // 0 = zero time
		fail          bool
	}{
		{name: "body relative to Date", at: opaque, atAge: 100, rtAge: 200, date: true,
			body: expiryBody(serverNow.Add(3*time.Minute), serverNow.Add(time.Hour)), expires: 3 * time.Minute, refreshExpire: time.Hour},
		{name: "Max-Age without Date", at: opaque, atAge: 100, rtAge: 200,
			body: expiryBody(serverNow.Add(3*time.Minute), serverNow.Add(time.Hour)), expires: 100 * time.Second, refreshExpire: 200 * time.Second},
		{name: "body instant when nothing else", at: opaque,
			body: expiryBody(t0.Add(3*time.Minute), t0.Add(time.Hour)), expires: 3 * time.Minute, refreshExpire: time.Hour},
		{name: "fractional seconds, no offset", at: opaque, date: true,
			body: `{"accessTokenExpiration":"` + serverNow.Add(90*time.Second).Format("2006-01-02T15:04:05.000") + `","refreshTokenExpiration":"x"}`, expires: 90 * time.Second},
		{name: "JWT exp-iat", at: testJWT(t, "", t0.Add(-time.Hour), 4*time.Minute), body: `{}`, expires: 4 * time.Minute},
		{name: "default TTL", at: opaque, body: `not json`, ttl: time.Minute, expires: time.Minute},
		{name: "no lifetime at all", at: opaque, body: `{}`, fail: true},
		{name: "expired instant ignored", at: opaque, date: true, ttl: time.Minute,
			body: expiryBody(serverNow.Add(-time.Minute), serverNow.Add(-time.Minute)), expires: time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, folioAnswer(tc.at, "rt", tc.atAge, tc.rtAge, tc.date, tc.body))
			f := newTestFOLIO(t, rec.URL, func(c *FOLIOConfig) { c.DefaultTTL = tc.ttl })
			ts, err := f.Mint(context.Background(), Grant{Type: GrantPassword, Username: "u", Password: "p"})
			if tc.fail {
				if e := asError(t, err); e.Class != ClassConfiguration {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantRefresh := time.Time{}
			if tc.refreshExpire > 0 {
				wantRefresh = t0.Add(tc.refreshExpire)
			}
			if !ts.ExpiresAt.Equal(t0.Add(tc.expires)) || !ts.RefreshExpiresAt.Equal(wantRefresh) {
				t.Fatalf("expires %s refresh %s, want %s and %s", ts.ExpiresAt, ts.RefreshExpiresAt, t0.Add(tc.expires), wantRefresh)
			}
		})
	}
}

func TestFOLIORefresh(t *testing.T) {
	body := expiryBody(serverNow.Add(10*time.Minute), serverNow.Add(time.Hour))
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		// An invalidation of an old cookie first, as gateways may add, then the new pair.
		w.Header().Add("Set-Cookie", "folioAccessToken=; Max-Age=0; Path=/")
		folioAnswer("at-2", "rt-2", 600, 3600, true, body)(w, r)
	})
	f := newTestFOLIO(t, rec.URL, nil)
	ts, err := f.Refresh(context.Background(), "rt-1")
	if err != nil {
		t.Fatal(err)
	}
	s := rec.last(t)
	if s.Method != http.MethodPost || s.Path != "/authn/refresh" || s.Body != "" || s.Header.Get("Cookie") != "folioRefreshToken=rt-1" ||
		s.Header.Get("X-Okapi-Tenant") != "diku" {
		t.Fatalf("request %s %s cookie=%q tenant=%q body=%q", s.Method, s.Path, s.Header.Get("Cookie"), s.Header.Get("X-Okapi-Tenant"), s.Body)
	}
	if ts.AccessToken != "at-2" || ts.RefreshToken != "rt-2" || !ts.ExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("got %s", ts)
	}
	if _, err := f.Refresh(context.Background(), "bad;cookie"); ClassOf(err) != ClassConfiguration {
		t.Fatalf("a refresh token that cannot be a cookie: %v", err)
	}
	if _, err := f.Refresh(context.Background(), ""); ClassOf(err) != ClassConfiguration {
		t.Fatalf("empty refresh token: %v", err)
	}
}

func TestFOLIOErrors(t *testing.T) {
	body := expiryBody(serverNow.Add(10*time.Minute), serverNow.Add(time.Hour))
	for _, tc := range []struct {
		name                string
		h                   http.HandlerFunc
		loginClass, rtClass Class
		desc                string
		retryAfter          time.Duration
	}{
		{name: "422 (Eureka refresh refused)", h: respond(422, `{"errors":[{"message":"Authorization server unable to process token refresh request","code":"TOKEN_REFRESH_UNPROCESSABLE","type":"TokenRefreshException"}],"total_records":1}`),
			loginClass: ClassDeadChain, rtClass: ClassDeadChain, desc: "unable to process token refresh"},
		{name: "422 (Okapi, text)", h: respond(422, "Unprocessable entity. mod-authtoken has returned a 400 level response.", "Content-Type", "text/plain"),
			loginClass: ClassDeadChain, rtClass: ClassDeadChain, desc: "mod-authtoken"},
		{name: "401 Token leaked", h: respond(401, "Token leaked, does not exist or no longer exists. All tokens for user are now revoked.", "Content-Type", "text/plain"),
			loginClass: ClassDeadChain, rtClass: ClassDeadChain, desc: "Token leaked"},
		{name: "401 expired", h: respond(401, "Token has expired. Considered revoked.", "Content-Type", "text/plain"),
			loginClass: ClassDeadChain, rtClass: ClassDeadChain},
		{name: "400", h: respond(400, `{"errors":[{"message":"Tenant must be set"}]}`), loginClass: ClassConfiguration, rtClass: ClassConfiguration, desc: "Tenant must be set"},
		{name: "404 (no login-with-expiry)", h: respond(404, "No suitable module found for path /authn/login-with-expiry"), loginClass: ClassConfiguration, rtClass: ClassConfiguration},
		{name: "500", h: respond(500, "internal"), loginClass: ClassTransient, rtClass: ClassTransient},
		{name: "503 from the sidecar", h: respond(503, "", "Retry-After", "1"), loginClass: ClassTransient, rtClass: ClassTransient, retryAfter: time.Second},
		{name: "504", h: respond(504, ""), loginClass: ClassOutcomeUnknown, rtClass: ClassOutcomeUnknown},
		// A success without the access-token cookie: a login gets the same answer again
		// (Configuration); a refresh may have spent the refresh token (OutcomeUnknown).
		{name: "201 without the access-token cookie", h: folioAnswer("", "rt-2", 0, 0, true, body), loginClass: ClassConfiguration, rtClass: ClassOutcomeUnknown, desc: "no folioAccessToken cookie"},
		{name: "201 without the refresh-token cookie", h: folioAnswer("at-2", "", 0, 0, true, body), loginClass: ClassConfiguration, rtClass: ClassOutcomeUnknown, desc: "no folioRefreshToken cookie"},
		{name: "201 with only invalidated cookies", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "folioAccessToken=; Max-Age=0; Path=/")
			w.Header().Add("Set-Cookie", "folioRefreshToken=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/authn")
			w.WriteHeader(201)
		}, loginClass: ClassConfiguration, rtClass: ClassOutcomeUnknown},
		{name: "connection closed after the request", h: hijack(""), loginClass: ClassOutcomeUnknown, rtClass: ClassOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, tc.h)
			f := newTestFOLIO(t, rec.URL, nil)
			_, err := f.Mint(context.Background(), Grant{Type: GrantPassword, Username: "u", Password: "p"})
			e := asError(t, err)
			if e.Class != tc.loginClass || !strings.Contains(e.Description, tc.desc) || e.RetryAfter != tc.retryAfter {
				t.Fatalf("login: got %v (class %s), want %s with %q", err, e.Class, tc.loginClass, tc.desc)
			}
			_, err = f.Refresh(context.Background(), "rt-1")
			if e := asError(t, err); e.Class != tc.rtClass || e.Op != "refresh" {
				t.Fatalf("refresh: got %v, want %s", err, tc.rtClass)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		f := newTestFOLIO(t, closedURL(t), nil)
		if _, err := f.Refresh(context.Background(), "rt"); ClassOf(err) != ClassTransient {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("other grants", func(t *testing.T) {
		f := newTestFOLIO(t, "https://folio.example", nil)
		for _, g := range []GrantType{GrantClientCredentials, GrantTokenExchange, GrantRefreshToken} {
			_, err := f.Mint(context.Background(), Grant{Type: g, RefreshToken: "x", SubjectToken: "y"})
			if e := asError(t, err); e.Class != ClassConfiguration || !strings.Contains(err.Error(), string(g)) {
				t.Fatalf("%s: got %v", g, err)
			}
		}
		if _, err := f.Mint(context.Background(), Grant{Type: GrantPassword, Username: "u"}); ClassOf(err) != ClassConfiguration {
			t.Fatalf("no password: %v", err)
		}
	})
}

func TestFOLIORevoke(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		h     http.HandlerFunc
		class Class
	}{
		{"204", respond(204, "", "Set-Cookie", "folioRefreshToken=; Max-Age=0"), ""},
		{"404 unknown", respond(404, ""), ""},
		{"500", respond(500, ""), ClassTransient},
		{"503", respond(503, "", "Retry-After", "3"), ClassTransient},
		{"401 Token leaked", respond(401, "Token leaked"), ClassDeadChain},
		{"401 other", respond(401, "Unauthorized"), ClassConfiguration},
		{"connection closed", hijack(""), ClassTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, tc.h)
			f := newTestFOLIO(t, rec.URL, nil)
			err := f.Revoke(ctx, Revocation{AccessToken: "at", RefreshToken: "rt-9"})
			if tc.class == "" && err != nil || tc.class != "" && ClassOf(err) != tc.class {
				t.Fatalf("got %v, want %q", err, tc.class)
			}
			s := rec.last(t)
			if s.Method != http.MethodPost || s.Path != "/authn/logout" || s.Header.Get("Cookie") != "folioRefreshToken=rt-9" || s.Header.Get("X-Okapi-Tenant") != "diku" {
				t.Fatalf("request %s %s cookie %q", s.Method, s.Path, s.Header.Get("Cookie"))
			}
		})
	}
	t.Run("nothing is sent without a refresh token", func(t *testing.T) {
		// On Eureka a logout without the cookie logs the user out everywhere.
		rec := newRecorder(t, respond(204, ""))
		f := newTestFOLIO(t, rec.URL, nil)
		if err := f.Revoke(ctx, Revocation{AccessToken: "at"}); err != nil {
			t.Fatal(err)
		}
		if len(rec.requests()) != 0 {
			t.Fatal("a logout was sent without a refresh token")
		}
	})
	t.Run("replaced chains are never presented", func(t *testing.T) {
		// Okapi takes a spent refresh token, even in a logout, for a leak of the user's.
		rec := newRecorder(t, respond(204, ""))
		f := newTestFOLIO(t, rec.URL, nil)
		if err := f.Revoke(ctx, Revocation{AccessToken: "at", RefreshToken: "rt-9", Replaced: []string{"rt-1", "rt-2"}}); err != nil {
			t.Fatal(err)
		}
		reqs := rec.requests()
		if len(reqs) != 1 || reqs[0].Header.Get("Cookie") != "folioRefreshToken=rt-9" {
			t.Fatalf("%d logouts; the last with cookie %q", len(reqs), reqs[len(reqs)-1].Header.Get("Cookie"))
		}
	})
}
