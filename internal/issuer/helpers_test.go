package issuer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clocktesting "k8s.io/utils/clock/testing"
)

// t0 is the fake clock's time: far from the real clock, so any use of time.Now() in
// place of the injected clock shows.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func fakeClock() *clocktesting.FakePassiveClock { return clocktesting.NewFakePassiveClock(t0) }

// seen is one request a test server received.
type seen struct {
	Method string
	Path   string
	Header http.Header
	Body   string
	Form   url.Values
}

// recorder is a test server on 127.0.0.1 that records requests and answers with fn.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newRecorder(t *testing.T, fn http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body)) // handlers may read it again
		s := seen{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)}
		s.Form, _ = url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, s)
		rec.mu.Unlock()
		if fn != nil {
			fn(w, r)
		}
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

func (r *recorder) last(t *testing.T) seen {
	t.Helper()
	reqs := r.requests()
	if len(reqs) == 0 {
		t.Fatal("the server saw no request")
	}
	return reqs[len(reqs)-1]
}

// respond answers with a status, headers (name, value pairs) and body.
func respond(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Add(headers[i], headers[i+1])
		}
		if w.Header().Get("Content-Type") == "" && body != "" && body[0] == '{' {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// testJWT signs a JWT with HS256 (the operator never verifies it) and the given kid.
func testJWT(tb testing.TB, kid string, iat time.Time, lifetime time.Duration) string {
	tb.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iat": iat.Unix(), "exp": iat.Add(lifetime).Unix(), "sub": "job", "jti": "x",
	})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString([]byte("test-key-test-key-test-key-test-key"))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// newTestOAuth2 builds an OAuth2 client against explicit endpoints on srv.
func newTestOAuth2(t *testing.T, srvURL string, mod func(*OAuth2Config)) *OAuth2 {
	t.Helper()
	cfg := OAuth2Config{
		TokenURL:      srvURL + "/token",
		RevocationURL: srvURL + "/revoke",
		JWKSURL:       srvURL + "/jwks",
		ClientID:      "job-client",
		ClientSecret:  "client-secret-value",
		Clock:         fakeClock(),
		// Test servers are plain http on 127.0.0.1.
		AllowPlainHTTP: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	o, err := NewOAuth2(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewOAuth2: %v", err)
	}
	return o
}

// classOf asserts err is an *Error and returns it.
func asError(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	var ie *Error
	if !errors.As(err, &ie) {
		t.Fatalf("want *issuer.Error, got %T: %v", err, err)
	}
	return ie
}

// closedURL is an http URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

// hijack reads the whole request, then lets raw write what it likes on the bare
// connection before closing it.
func hijack(raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if raw != "" {
			_, _ = buf.WriteString(raw)
			_ = buf.Flush()
		}
		_ = conn.Close()
	}
}

// stall reads the request and answers only after the client gave up (or the test ended).
func stall(t *testing.T) http.HandlerFunc {
	t.Helper()
	h, _ := stallNotify(t)
	return h
}

// stallNotify is stall, also signalling each request's arrival (after its body was read).
func stallNotify(t *testing.T) (http.HandlerFunc, <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	arrived := make(chan struct{}, 16)
	t.Cleanup(func() { close(done) })
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}, arrived
}
