package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// secretToken is short and full of punctuation on purpose: the generic "looks like a
// token" rule does not match it, so only scrubbing of the request's own secrets can
// keep it out of errors. It is a valid cookie value and survives form encoding changed.
const secretToken = "tok!En*9#Zq~aa^S3cret"

// echo answers with everything the request carried, in every encoding, inside the
// given template ("%s" is replaced by the echo).
func echo(status int, contentType, template string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		parts := []string{string(body), fmt.Sprint(form), r.Header.Get("Cookie"), r.Header.Get("Authorization")}
		for _, vs := range form {
			parts = append(parts, vs...)
		}
		all := strings.Join(parts, " | ")
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], strings.ReplaceAll(headers[i+1], "%s", secretToken))
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		out := strings.ReplaceAll(template, "%s", all)
		if strings.HasPrefix(contentType, "application/json") {
			// Keep it JSON: the echo goes in as a string.
			out = strings.ReplaceAll(template, `"%s"`, fmt.Sprintf("%q", all))
		}
		_, _ = io.WriteString(w, out)
	}
}

// TestNoTokenBytesInErrors drives every error path with a known token in the request and
// checks that no error string carries it.
func TestNoTokenBytesInErrors(t *testing.T) {
	ctx := context.Background()
	jwtToken := testJWT(t, "k", t0, time.Minute) // long: caught by the generic rule too
	type server struct {
		name string
		h    func(t *testing.T) http.HandlerFunc
		// timeout for the client (for stalls)
		timeout time.Duration
	}
	fixed := func(h http.HandlerFunc) func(*testing.T) http.HandlerFunc {
		return func(*testing.T) http.HandlerFunc { return h }
	}
	oauthServers := []server{
		{"400 error echo", fixed(echo(400, "application/json", `{"error":"invalid_grant","error_description":"%s"}`)), 0},
		{"400 code echo", fixed(echo(400, "application/json", `{"error":"%s","error_description":"x"}`)), 0},
		{"200 error echo", fixed(echo(200, "application/json", `{"error":"invalid_request","error_description":"%s"}`)), 0},
		{"200 not JSON echo", fixed(echo(200, "text/html", `<html>%s</html>`)), 0},
		{"200 without access token", fixed(echo(200, "application/json", `{"refresh_token":"%s","expires_in":5}`)), 0},
		{"200 without lifetime", fixed(echo(200, "application/json", `{"access_token":"%s"}`)), 0},
		{"form-encoded error echo", fixed(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, "error=invalid_grant&error_description="+url.QueryEscape(string(body)))
		}), 0},
		{"500 text echo", fixed(echo(500, "text/plain", `failed: %s`)), 0},
		{"503 odd Retry-After", fixed(echo(503, "text/plain", `%s`, "Retry-After", "%s")), 0},
		{"307 to a URL with the token", fixed(echo(307, "", "", "Location", "https://elsewhere.example/?t=%s")), 0},
		{"connection closed", fixed(hijack("")), 0},
		{"body cut short", fixed(hijack("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"refresh_token\":\"" + secretToken)), 0},
		{"garbage status line", fixed(hijack("HTTP/1.1 " + secretToken + "\r\n\r\n")), 0},
		{"timeout", stall, 200 * time.Millisecond},
	}
	folioServers := []server{
		{"422 JSON echo", fixed(echo(422, "application/json", `{"errors":[{"message":"%s","code":"TOKEN_REFRESH_UNPROCESSABLE"}]}`)), 0},
		{"401 Token leaked echo", fixed(echo(401, "text/plain", `Token leaked: %s`)), 0},
		{"400 text echo", fixed(echo(400, "text/plain", `%s`)), 0},
		{"500 echo", fixed(echo(500, "text/plain", `%s`)), 0},
		{"201 without the access cookie", fixed(echo(201, "application/json", `{"x":"%s"}`, "Set-Cookie", "folioRefreshToken=%s; Path=/authn")), 0},
		{"201 without lifetime", fixed(echo(201, "application/json", `{"x":"%s"}`, "Set-Cookie", "folioAccessToken=%s; Path=/")), 0},
		{"connection closed", fixed(hijack("")), 0},
		{"timeout", stall, 200 * time.Millisecond},
	}

	type op struct {
		name string
		run  func(Client) error
	}
	var checked int
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: want an error", what)
		}
		if !errors.As(err, new(*Error)) {
			t.Fatalf("%s: %T is not an *Error", what, err)
		}
		texts := []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), fmt.Sprintf("%s", err)}
		var ie *Error
		errors.As(err, &ie)
		texts = append(texts, fmt.Sprintf("%#v", *ie), ie.Code, ie.Description)
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			texts = append(texts, u.Error(), fmt.Sprintf("%+v", u), fmt.Sprintf("%#v", u))
		}
		for _, s := range texts {
			for _, secret := range []string{secretToken, url.QueryEscape(secretToken), jwtToken} {
				if strings.Contains(s, secret) {
					t.Fatalf("%s: the error carries token bytes: %s", what, s)
				}
			}
		}
		checked++
	}

	oauthOps := []op{
		{"mint password", func(c Client) error {
			_, err := c.Mint(ctx, Grant{Type: GrantPassword, Username: "u", Password: secretToken})
			return err
		}},
		{"mint token exchange", func(c Client) error {
			_, err := c.Mint(ctx, Grant{Type: GrantTokenExchange, SubjectToken: secretToken})
			return err
		}},
		{"mint refresh token", func(c Client) error {
			_, err := c.Mint(ctx, Grant{Type: GrantRefreshToken, RefreshToken: secretToken})
			return err
		}},
		{"refresh", func(c Client) error { _, err := c.Refresh(ctx, secretToken); return err }},
		{"refresh jwt", func(c Client) error { _, err := c.Refresh(ctx, jwtToken); return err }},
		{"revoke", func(c Client) error {
			return c.Revoke(ctx, Revocation{AccessToken: secretToken, RefreshToken: secretToken})
		}},
	}
	for _, srv := range oauthServers {
		for _, auth := range []string{ClientAuthSecretBasic, ClientAuthSecretPost} {
			t.Run("oauth2 "+srv.name+" "+auth, func(t *testing.T) {
				rec := newRecorder(t, srv.h(t))
				o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) {
					c.ClientAuth, c.ClientSecret = auth, secretToken // the client secret is a secret too
					if srv.timeout > 0 {
						c.HTTPClient = &http.Client{Timeout: srv.timeout}
					}
				})
				for _, o2 := range oauthOps {
					err := o2.run(o)
					if o2.name == "revoke" && err == nil {
						continue // a 200 or a "dead already" answer to a revocation is success
					}
					check(t, o2.name, err)
				}
			})
		}
	}
	folioOps := []op{
		{"login", func(c Client) error {
			_, err := c.Mint(ctx, Grant{Type: GrantPassword, Username: "u", Password: secretToken})
			return err
		}},
		{"refresh", func(c Client) error { _, err := c.Refresh(ctx, secretToken); return err }},
		{"refresh jwt", func(c Client) error { _, err := c.Refresh(ctx, jwtToken); return err }},
		{"logout", func(c Client) error {
			return c.Revoke(ctx, Revocation{AccessToken: secretToken, RefreshToken: secretToken})
		}},
	}
	for _, srv := range folioServers {
		t.Run("folio "+srv.name, func(t *testing.T) {
			rec := newRecorder(t, srv.h(t))
			f := newTestFOLIO(t, rec.URL, func(c *FOLIOConfig) {
				if srv.timeout > 0 {
					c.HTTPClient = &http.Client{Timeout: srv.timeout}
				}
			})
			for _, o2 := range folioOps {
				if strings.HasPrefix(srv.name, "201") && o2.name == "logout" {
					continue // a 2xx to a logout is success
				}
				check(t, o2.name, o2.run(f))
			}
		})
	}
	// Discovery and JWKS errors quote URLs, never tokens; config errors never see one.
	if _, err := NewOAuth2(ctx, OAuth2Config{TokenURL: "https://idp/token", ClientID: "c", ClientAuth: "bogus", ClientSecret: secretToken}); err != nil {
		check(t, "config", err)
	}
	if checked < 100 {
		t.Fatalf("only %d error paths checked", checked)
	}
}

func TestScrubber(t *testing.T) {
	sc := scrubber{"abc", "s3cret value"}
	got := sc.text("x abcd s3cret value s3cret+value s3cret%20value eyJhbGciOi.eyJzdWIi.sig\n"+strings.Repeat("A", 45)+" 123e4567-e89b-12d3-a456-426614174000", 1000)
	want := "x abcd [redacted] [redacted] [redacted] [redacted] [redacted] 123e4567-e89b-12d3-a456-426614174000"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := sc.text(strings.Repeat("é ", 400), 10); got != strings.Repeat("é ", 5)+"..." {
		t.Fatalf("truncation: %q", got)
	}
}

// TestScrubberForms lists the spellings of a secret a server may echo back, for secrets
// of every length, and the text around them that must survive.
func TestScrubberForms(t *testing.T) {
	basic := func(id, secret string) string {
		return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	}
	jsonQuote := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	for _, tc := range []struct {
		name    string
		secrets []string
		in      string
		// gone must not appear in the output; kept must.
		gone, kept []string
	}{
		{"one-character password alone", []string{"x"}, `invalid password x for user bob`, []string{" x "}, []string{"invalid password", "bob"}},
		{"one-character password in a form echo", []string{"x"}, `grant_type=password&username=bob&password=x`, []string{"password=x"}, []string{"username=bob"}},
		{"three-character secret quoted", []string{"p@s"}, `{"error":"invalid_client","error_description":"secret \"p@s\" is wrong"}`, []string{"p@s"}, []string{"invalid_client"}},
		{"short secret inside a word stays readable", []string{"in"}, `invalid_grant: login failed`, nil, []string{"invalid_grant: login failed"}},
		{"JSON escaped HTML characters", []string{"a<b>&c'd"}, `description: ` + jsonQuote("a<b>&c'd"), []string{`\u003cb\u003e\u0026c'd`, "a<b>&c'd"}, []string{"description:"}},
		{"JSON escaped control and unicode", []string{"p\u00e4ss\tw\"o\\rd"}, `got ` + jsonQuote("p\u00e4ss\tw\"o\\rd"), []string{`\t`, `w\"o`}, []string{"got"}},
		{"JSON escaped slash", []string{"a/b/c/d"}, `{"e":"a\/b\/c\/d"}`, []string{`a\/b`}, []string{`{"e":"`}},
		{"base64 of the secret", []string{"hunter2!"}, `echo: ` + base64.StdEncoding.EncodeToString([]byte("hunter2!")), []string{base64.StdEncoding.EncodeToString([]byte("hunter2!"))}, []string{"echo:"}},
		{"Basic header of a short secret", []string{"s3"}, `Authorization: Basic ` + basic("job-client", "s3"), []string{basic("job-client", "s3")}, []string{"Authorization: Basic"}},
		{"Basic header with slash in base64", nil, `header was basic ` + basic("c??", "??>"), []string{basic("c??", "??>")}, []string{"header was"}},
		{"Basic credential alone", []string{basic("job-client", "s3")}, `unknown credential ` + basic("job-client", "s3") + ` refused`, []string{basic("job-client", "s3")}, []string{"unknown credential", "refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scrubber(tc.secrets).text(tc.in, 1000)
			for _, g := range tc.gone {
				if strings.Contains(got, g) {
					t.Errorf("%q survived in %q", g, got)
				}
			}
			for _, k := range tc.kept {
				if !strings.Contains(got, k) {
					t.Errorf("%q was lost from %q", k, got)
				}
			}
		})
	}
}
