package issuer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// oauth2ParserMessages and folioParserMessages are all the text the parsers' errors are
// made of. Bytes of an input token that also occur here prove nothing, so the leak check
// ignores them; a parser error that gains new fixed text needs it added here.
const (
	oauth2ParserMessages = "the form-encoded body does not parse\n" +
		"the body is not a JSON token response\n" +
		"the response carries an error member\n" +
		"the response has no access_token\n" +
		"expires_in: not a number\nexpires_in: negative\n" +
		"refresh_expires_in: not a number\nrefresh_expires_in: negative\n" +
		"the response has no expires_in, the access token carries no exp and iat, and no default lifetime is configured"
	folioParserMessages = "no " + folioAccessCookie + " cookie\n" +
		"no " + folioRefreshCookie + " cookie\n" +
		"no usable accessTokenExpiration, Max-Age or token exp, and no default lifetime is configured"
)

// leakWindow is the shortest run of a token's bytes that counts as quoting it, so that a
// shortened or partly quoted token is caught as well as a whole one.
const leakWindow = 8

// quotes reports whether msg holds the token, or a run of leakWindow of its bytes, that
// is not part of the parser's fixed text.
func quotes(msg, token, fixed string) bool {
	if token == "" {
		return false
	}
	n := min(len(token), leakWindow)
	for i := 0; i+n <= len(token); i++ {
		if w := token[i : i+n]; strings.Contains(msg, w) && !strings.Contains(fixed, w) {
			return true
		}
	}
	return false
}

// checkNoToken fails when any rendering of err quotes one of the tokens.
func checkNoToken(t *testing.T, err error, fixed string, tokens map[string]string) {
	t.Helper()
	for _, msg := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err)} {
		for what, tok := range tokens {
			if quotes(msg, tok, fixed) {
				t.Fatalf("the error quotes the input's %s (%d bytes)", what, len(tok))
			}
		}
	}
}

// responseTokens reads access_token and refresh_token from a token response without the
// parser: url.ParseQuery for a form, for JSON a struct with only these two members (which
// encoding/json matches as it does the parser's).
func responseTokens(body []byte, contentType string) (access, refresh string) {
	if isFormContent(contentType) {
		v, _ := url.ParseQuery(string(body))
		return v.Get("access_token"), v.Get("refresh_token")
	}
	var m struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(body, &m)
	return m.AccessToken, m.RefreshToken
}

// FuzzParseOAuth2TokenResponse: the token-response parser never panics; its errors never
// quote a token of the input; a success carries exactly the input's tokens (an RFC 8693
// answer that issued only a refresh token carries it as the refresh token and no access
// token), a type and a future expiry.
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
		// A distinct token on every error path, for the leak check.
		{`{"access_token":"at-Zq81-bad-expiry","expires_in":"soon","refresh_token":"rt-Zq81-bad-expiry"}`, "application/json", 0},
		{`{"access_token":"at-Zq81-negative","expires_in":-5,"refresh_token":"rt-Zq81-negative"}`, "application/json", 0},
		{`{"access_token":"at-Zq81-refresh-exp","expires_in":60,"refresh_token":"rt-Zq81-refresh-exp","refresh_expires_in":{}}`, "application/json", 0},
		{`{"access_token":"at-Zq81-no-expiry","refresh_token":"rt-Zq81-no-expiry"}`, "application/json", 0},
		{`{"access_token":"at-Zq81-with-error","error":"invalid_grant","error_description":"at-Zq81-with-error"}`, "application/json", 0},
		{`{"access_token":"at-Zq81-broken",`, "application/json", 0},
		{"access_token=at-Zq81-form&refresh_token=rt-Zq81-form&expires_in=%zz", "application/x-www-form-urlencoded", 0},
		{`{"access_token":"rt-Zq81-issued","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","expires_in":60}`, "application/json", 0},
		{`{"ACCESS_TOKEN":"at-Zq81-case","Refresh_Token":"rt-Zq81-case","expires_in":60}`, "application/json", 0},
	} {
		f.Add([]byte(seed.body), seed.ct, seed.ttl)
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string, ttlSeconds int64) {
		ttl := time.Duration(ttlSeconds%100000) * time.Second
		access, refresh := responseTokens(body, contentType)
		ts, onlyRefresh, err := parseTokenResponse(body, contentType, t0, ttl)
		if err != nil {
			if ts != nil {
				t.Fatal("a token set with an error")
			}
			checkNoToken(t, err, oauth2ParserMessages, map[string]string{"access token": access, "refresh token": refresh})
			return
		}
		if ts == nil {
			t.Fatal("success without a token set")
		}
		if onlyRefresh {
			// RFC 8693: the issued token is in access_token, and it is a refresh token.
			if ts.AccessToken != "" || ts.RefreshToken == "" || ts.RefreshToken != access {
				t.Fatalf("only-refresh answer: access token set %v, refresh token is the input's issued token %v",
					ts.AccessToken != "", ts.RefreshToken == access)
			}
			return
		}
		if ts.AccessToken == "" {
			t.Fatal("success without an access token")
		}
		if ts.AccessToken != access || ts.RefreshToken != refresh {
			t.Fatalf("parsed tokens differ from the input's: access token %v (%d vs %d bytes), refresh token %v (%d vs %d bytes)",
				ts.AccessToken == access, len(ts.AccessToken), len(access), ts.RefreshToken == refresh, len(ts.RefreshToken), len(refresh))
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

// setCookieValue reads the name and value of a Set-Cookie line without net/http: the
// text before the first ";", split at the first "=", trimmed of ASCII white space, the
// value without surrounding double quotes.
func setCookieValue(line string) (name, value string) {
	first, _, _ := strings.Cut(line, ";")
	name, value, ok := strings.Cut(first, "=")
	if !ok {
		return "", ""
	}
	name, value = strings.Trim(name, " \t\r\n"), strings.Trim(value, " \t\r\n")
	if len(value) > 1 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	return name, value
}

// FuzzParseFOLIOResponse: the FOLIO answer parser (cookies, Date, body) never panics;
// its errors never quote a cookie value of the input; a success carries exactly the
// values of the input's folioAccessToken and folioRefreshToken cookies and a future
// expiry.
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
		// A distinct value on every error path, for the leak check.
		{"folioAccessToken=at-Zq81-alone; Max-Age=600", "", date, body, 0},
		{"", "folioRefreshToken=rt-Zq81-alone; Max-Age=600", date, body, 0},
		{"folioAccessToken=at-Zq81-no-expiry", "folioRefreshToken=rt-Zq81-no-expiry", "", `{}`, 0},
		{"folioAccessToken=at-Zq81-gone; Max-Age=0", "folioRefreshToken=rt-Zq81-kept; Max-Age=60", date, body, 0},
		{" folioAccessToken = \"at-Zq81-spaced\" ; Max-Age=60", "folioRefreshToken=rt-Zq81-spaced", "", `{}`, 0},
	} {
		f.Add(seed.access, seed.refresh, seed.date, []byte(seed.body), seed.ttl)
	}
	f.Fuzz(func(t *testing.T, accessCookie, refreshCookie, date string, body []byte, ttlSeconds int64) {
		h := http.Header{}
		values := map[string]string{}
		for i, c := range []string{accessCookie, refreshCookie} {
			if c != "" {
				h.Add("Set-Cookie", c)
			}
			name, value := setCookieValue(c)
			values[fmt.Sprintf("cookie %d value", i)] = value
			if name == folioAccessCookie || name == folioRefreshCookie {
				values[name] = value
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
			checkNoToken(t, err, folioParserMessages, map[string]string{
				"first cookie's value": values["cookie 0 value"], "second cookie's value": values["cookie 1 value"],
			})
			return
		}
		if ts == nil || ts.AccessToken == "" || ts.RefreshToken == "" {
			t.Fatal("success without both tokens")
		}
		// Success needs both cookies, so each of the two lines holds one of them.
		if ts.AccessToken != values[folioAccessCookie] || ts.RefreshToken != values[folioRefreshCookie] {
			t.Fatalf("parsed tokens differ from the input's cookies: access token %v (%d vs %d bytes), refresh token %v (%d vs %d bytes)",
				ts.AccessToken == values[folioAccessCookie], len(ts.AccessToken), len(values[folioAccessCookie]),
				ts.RefreshToken == values[folioRefreshCookie], len(ts.RefreshToken), len(values[folioRefreshCookie]))
		}
		if !ts.ExpiresAt.After(t0) {
			t.Fatalf("expiry %s not after receipt %s", ts.ExpiresAt, t0)
		}
		if !ts.RefreshExpiresAt.IsZero() && !ts.RefreshExpiresAt.After(t0) {
			t.Fatalf("refresh expiry %s not after receipt", ts.RefreshExpiresAt)
		}
	})
}
