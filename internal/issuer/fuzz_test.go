package issuer

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseOAuth2TokenResponse: the token-response parser never panics, and never
// returns a set without an access token or without a future expiry.
func FuzzParseOAuth2TokenResponse(f *testing.F) {
	jwtAT := testJWT(f, "kid-1", t0, 5*time.Minute)
	for _, seed := range []struct {
		body, ct string
		ttl      int64
	}{
		{`{"access_token":"` + jwtAT + `","expires_in":300,"refresh_expires_in":1800,"refresh_token":"r","token_type":"Bearer","not-before-policy":0,"session_state":"s","scope":"a b"}`, "application/json", 0},
		{`{"access_token":"ory_at_x.y","expires_in":3599,"refresh_token":"ory_rt_a.b","token_type":"bearer"}`, "application/json;charset=UTF-8", 0},
		{`{"access_token":"a","expires_in":"60"}`, "", 0},
		{`{"access_token":"` + jwtAT + `"}`, "application/json", 0},
		{`{"access_token":"a"}`, "application/json", 60},
		{`{"access_token":"a","expires_in":1e300,"refresh_expires_in":-1}`, "application/json", 0},
		{`{"access_token":"a","expires_in":null,"refresh_expires_in":"x"}`, "application/json", 1},
		{`{"error":"invalid_grant","error_description":"Stale token"}`, "application/json", 0},
		{"access_token=a&expires_in=5&token_type=bearer", "application/x-www-form-urlencoded", 0},
		{"access_token=a.b.c&expires_in=NaN", "text/plain", 0},
		{`{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOiJ4In0."}`, "application/json", 10},
		{`[]`, "application/json", 0},
		{``, "", 0},
	} {
		f.Add([]byte(seed.body), seed.ct, seed.ttl)
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string, ttlSeconds int64) {
		ttl := time.Duration(ttlSeconds%100000) * time.Second
		ts, err := parseOAuth2TokenResponse(body, contentType, t0, ttl)
		if err != nil {
			if ts != nil {
				t.Fatal("a token set with an error")
			}
			return
		}
		if ts == nil || ts.AccessToken == "" {
			t.Fatal("success without an access token")
		}
		if !ts.ExpiresAt.After(t0) {
			t.Fatalf("expiry %s not after receipt %s", ts.ExpiresAt, t0)
		}
		if !ts.RefreshExpiresAt.IsZero() && !ts.RefreshExpiresAt.After(t0) {
			t.Fatalf("refresh expiry %s not after receipt", ts.RefreshExpiresAt)
		}
		if ts.TokenType == "" {
			t.Fatal("empty token type")
		}
	})
}

// FuzzParseFOLIOResponse: the FOLIO answer parser (cookies, Date, body) never panics and
// never returns a set without both tokens or without a future expiry.
func FuzzParseFOLIOResponse(f *testing.F) {
	jwtAT := testJWT(f, "kid-1", t0, 10*time.Minute)
	date := t0.Add(time.Minute).Format(http.TimeFormat)
	body := `{"accessTokenExpiration":"` + t0.Add(11*time.Minute).Format(time.RFC3339) + `","refreshTokenExpiration":"` + t0.Add(time.Hour).Format(time.RFC3339Nano) + `"}`
	for _, seed := range []struct {
		access, refresh, date, body string
		ttl                         int64
	}{
		{"folioAccessToken=" + jwtAT + "; Max-Age=600; Path=/; Secure; HttpOnly; SameSite=None", "folioRefreshToken=rt; Max-Age=604800; Path=/authn; Secure; HttpOnly; SameSite=None", date, body, 0},
		{"folioAccessToken=at; Max-Age=600", "folioRefreshToken=rt; Max-Age=604800", "", `{}`, 0},
		{"folioAccessToken=at", "folioRefreshToken=rt", "", body, 0},
		{"folioAccessToken=at", "folioRefreshToken=rt", date, `{"accessTokenExpiration":"2031-03-04T05:20:00.123","refreshTokenExpiration":5}`, 0},
		{"folioAccessToken=; Max-Age=0", "folioRefreshToken=rt", date, body, 30},
		{"folioAccessToken=\"quoted\"", "folioRefreshToken=rt; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "garbage", `not json`, 30},
		{"other=1", "", "", "", 0},
	} {
		f.Add(seed.access, seed.refresh, seed.date, []byte(seed.body), seed.ttl)
	}
	f.Fuzz(func(t *testing.T, accessCookie, refreshCookie, date string, body []byte, ttlSeconds int64) {
		h := http.Header{}
		for _, c := range []string{accessCookie, refreshCookie} {
			if c != "" {
				h.Add("Set-Cookie", c)
			}
		}
		if date != "" {
			h.Set("Date", date)
		}
		ttl := time.Duration(ttlSeconds%100000) * time.Second
		ts, err := parseFOLIOResponse(h, body, t0, ttl)
		if err != nil {
			if ts != nil {
				t.Fatal("a token set with an error")
			}
			if strings.Contains(err.Error(), "folioAccessToken=") {
				t.Fatal("the error quotes a cookie")
			}
			return
		}
		if ts == nil || ts.AccessToken == "" || ts.RefreshToken == "" {
			t.Fatal("success without both tokens")
		}
		if !ts.ExpiresAt.After(t0) {
			t.Fatalf("expiry %s not after receipt %s", ts.ExpiresAt, t0)
		}
		if !ts.RefreshExpiresAt.IsZero() && !ts.RefreshExpiresAt.After(t0) {
			t.Fatalf("refresh expiry %s not after receipt", ts.RefreshExpiresAt)
		}
	})
}
