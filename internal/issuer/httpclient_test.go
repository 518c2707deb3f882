package issuer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRefusedDestination: a request to an address in a refused range is refused before
// any connection, by the address the name resolves to as well as by a literal address,
// with a Configuration error that names the address and the range.
func TestRefusedDestination(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder(t, respond(200, `{"access_token":"a","expires_in":60}`, "Content-Type", "application/json"))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rec.URL, "http://"))
	loopback, err := ParseNetworks("127.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{rec.URL, "http://localhost:" + port} {
		o := newTestOAuth2(t, base, func(c *OAuth2Config) {
			c.HTTPClient = NewHTTPClient(HTTPOptions{RefusedNetworks: loopback})
		})
		_, err := o.Mint(ctx, Grant{Type: GrantClientCredentials})
		e := asError(t, err)
		if e.Class != ClassConfiguration {
			t.Errorf("%s: class %s, want Configuration: %v", base, e.Class, err)
		}
		var refused *RefusedDestinationError
		if !errors.As(err, &refused) && !strings.Contains(err.Error(), "refused network") {
			t.Errorf("%s: the error does not say the destination was refused: %v", base, err)
		}
		if !strings.Contains(err.Error(), "127.0.0.0/8") && !strings.Contains(err.Error(), "::1/128") {
			t.Errorf("%s: the error does not name the range: %v", base, err)
		}
	}
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("the refused server received %d request(s)", n)
	}
	// The same server is reachable when nothing is refused.
	o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) { c.HTTPClient = NewHTTPClient(HTTPOptions{}) })
	if _, err := o.Mint(ctx, Grant{Type: GrantClientCredentials}); err != nil {
		t.Fatalf("unrefused: %v", err)
	}
}

// TestDefaultRefusedNetworks: the default ranges hold the cloud metadata address. (The
// dialer's refusal itself is proven on loopback by TestRefusedDestination: a test must
// not risk a packet to the real metadata address.)
func TestDefaultRefusedNetworks(t *testing.T) {
	for _, a := range []string{"169.254.169.254:80", "[fe80::1]:80", "[::ffff:169.254.169.254]:443"} {
		if err := checkDestination(DefaultRefusedNetworks, a); err == nil {
			t.Errorf("%s is not refused by default", a)
		}
	}
	for _, a := range []string{"127.0.0.1:80", "10.0.0.1:443", "[2001:db8::1]:443"} {
		if err := checkDestination(DefaultRefusedNetworks, a); err != nil {
			t.Errorf("%s is refused by default: %v", a, err)
		}
	}
	if got := FormatNetworks(DefaultRefusedNetworks); got != "169.254.0.0/16,fe80::/10" {
		t.Errorf("default ranges %q", got)
	}
	if _, err := ParseNetworks("10.0.0.0/8,nonsense"); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("a bad range: %v", err)
	}
}

// TestRequestTimeout: one hanging issuer costs a request at most the configured timeout,
// and the default lies between 5 and 10 seconds.
func TestRequestTimeout(t *testing.T) {
	if DefaultRequestTimeout < 5*time.Second || DefaultRequestTimeout > 10*time.Second {
		t.Fatalf("DefaultRequestTimeout %s is outside 5-10s", DefaultRequestTimeout)
	}
	if c := NewHTTPClient(HTTPOptions{}); c.Timeout != DefaultRequestTimeout {
		t.Fatalf("default client timeout %s", c.Timeout)
	}
	rec := newRecorder(t, stall(t))
	o := newTestOAuth2(t, rec.URL, func(c *OAuth2Config) {
		c.HTTPClient = NewHTTPClient(HTTPOptions{Timeout: 300 * time.Millisecond})
	})
	start := time.Now()
	_, err := o.Refresh(context.Background(), "some-refresh-token-value")
	d := time.Since(start)
	if e := asError(t, err); e.Class != ClassOutcomeUnknown {
		t.Fatalf("a refresh that timed out after sending: class %s (%v)", e.Class, err)
	}
	if d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("the request took %s with a 300ms timeout", d)
	}
}

// TestNoResponseBytesInErrors: whatever answers at an issuer's URL without speaking its
// protocol (an internal service's banner, an HTML page) never has its content quoted in
// an error, which is what conditions and events show.
func TestNoResponseBytesInErrors(t *testing.T) {
	const banner = "INTERNAL-BANNER-7f3a"
	ctx := context.Background()
	answers := map[string]http.HandlerFunc{
		"not HTTP":                 hijack("SSH-2.0-OpenSSH_9 " + banner + "\r\n"),
		"not HTTP after a status":  hijack("HTTP/1.1 200 OK\r\n" + banner + " no colon here\r\n\r\n"),
		"bad status code":          hijack("HTTP/1.1 2x0 " + banner + "\r\n\r\n"),
		"bad content length":       hijack("HTTP/1.1 200 OK\r\nContent-Length: " + banner + "\r\n\r\n"),
		"HTML page":                textAnswer(http.StatusNotFound, "text/html", "<html><title>"+banner+"</title></html>"),
		"HTML page with 200":       textAnswer(http.StatusOK, "text/html", "<html>"+banner+"</html>"),
		"JSON of another protocol": textAnswer(http.StatusForbidden, "application/json", `{"status":"`+banner+`"}`),
		"server error page":        textAnswer(http.StatusBadGateway, "text/html", banner),
	}
	for name, h := range answers {
		rec := newRecorder(t, h)
		o := newTestOAuth2(t, rec.URL, nil)
		f := newTestFOLIO(t, rec.URL, nil)
		for what, run := range map[string]func() error{
			"oauth2 mint":    func() error { _, err := o.Mint(ctx, Grant{Type: GrantClientCredentials}); return err },
			"oauth2 refresh": func() error { _, err := o.Refresh(ctx, "rt-value-1234"); return err },
			"oauth2 jwks":    func() error { _, err := o.KeyIDs(ctx); return err },
			"folio login": func() error {
				_, err := f.Mint(ctx, Grant{Type: GrantPassword, Username: "u", Password: "p"})
				return err
			},
			"folio refresh": func() error { _, err := f.Refresh(ctx, "rt-value-1234"); return err },
		} {
			err := run()
			if err == nil {
				t.Errorf("%s, %s: no error", name, what)
				continue
			}
			if strings.Contains(err.Error(), banner) || strings.Contains(err.Error(), "OpenSSH") {
				t.Errorf("%s, %s: the error quotes the answer: %v", name, what, err)
			}
		}
	}
	// FOLIO's own plain-text errors are still shown.
	rec := newRecorder(t, textAnswer(http.StatusUnprocessableEntity, "text/plain", "Password does not match"))
	_, err := newTestFOLIO(t, rec.URL, nil).Mint(ctx, Grant{Type: GrantPassword, Username: "u", Password: "p"})
	if err == nil || !strings.Contains(err.Error(), "Password does not match") {
		t.Fatalf("FOLIO's text error was lost: %v", err)
	}
}

func textAnswer(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}
