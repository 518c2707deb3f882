package tokenfile

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeAPI is an http.RoundTripper standing in for a protected API: it answers 401 to the
// tokens in rejected and 200 to any other, records what it saw, and can run a hook (the
// operator rotating the token) when it rejects.
type fakeAPI struct {
	mu       sync.Mutex
	rejected map[string]bool
	onReject func()
	auths    []string
	bodies   []string
	first401 *trackedBody
}

type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func (f *fakeAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	auth := r.Header.Get("Authorization")
	f.mu.Lock()
	f.auths = append(f.auths, auth)
	f.bodies = append(f.bodies, string(body))
	reject := f.rejected[strings.TrimPrefix(auth, "Bearer ")]
	f.mu.Unlock()
	status := http.StatusOK
	rb := &trackedBody{Reader: strings.NewReader("ok")}
	if reject {
		status = http.StatusUnauthorized
		rb = &trackedBody{Reader: strings.NewReader(`{"error":"invalid_token"}`)}
		f.mu.Lock()
		if f.first401 == nil {
			f.first401 = rb
		}
		f.mu.Unlock()
		if f.onReject != nil {
			f.onReject()
		}
	}
	return &http.Response{StatusCode: status, Body: rb, Header: http.Header{}, Request: r}, nil
}

// bearerVolume is a volume holding a plain Bearer token.
func bearerVolume(t *testing.T, value string) (string, *Source) {
	t.Helper()
	dir, file := newVolume(t, 0)
	publish(t, dir, map[string][]byte{KeyAccessToken: []byte(value)})
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

func TestTransportRetriesOnceWithChangedToken(t *testing.T) {
	dir, s := bearerVolume(t, "old")
	api := &fakeAPI{rejected: map[string]bool{"old": true}}
	api.onReject = func() { publish(t, dir, map[string][]byte{KeyAccessToken: []byte("new")}) }
	tr := NewTransport(s, api)

	req, _ := http.NewRequest(http.MethodGet, "http://api.test/records", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 after the retry", resp.StatusCode)
	}
	if want := []string{"Bearer old", "Bearer new"}; !slices.Equal(api.auths, want) {
		t.Fatalf("Authorization headers sent %v, want %v", api.auths, want)
	}
	if !api.first401.closed.Load() {
		t.Fatal("the body of the 401 response was not closed")
	}
	if req.Header.Get("Authorization") != "" {
		t.Fatal("the caller's request was modified")
	}
	if tr.Retries() != 1 {
		t.Fatalf("Retries() = %d", tr.Retries())
	}
}

func TestTransportNoRetryWhenTokenUnchanged(t *testing.T) {
	_, s := bearerVolume(t, "old")
	api := &fakeAPI{rejected: map[string]bool{"old": true}}
	tr := NewTransport(s, api)
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || len(api.auths) != 1 {
		t.Fatalf("status %d after %d calls; want the 401 after 1 call", resp.StatusCode, len(api.auths))
	}
	if api.first401.closed.Load() {
		t.Fatal("the 401 handed to the caller was closed")
	}
	_ = resp.Body.Close()
}

func TestTransportRetriesAtMostOnce(t *testing.T) {
	dir, s := bearerVolume(t, "t0")
	api := &fakeAPI{rejected: map[string]bool{"t0": true, "t1": true, "t2": true, "t3": true}}
	n := 0
	api.onReject = func() { // every token is rejected, and rotated each time
		n++
		publish(t, dir, map[string][]byte{KeyAccessToken: []byte("t" + strconv.Itoa(n))})
	}
	req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	resp, err := NewTransport(s, api).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(api.auths) != 2 {
		t.Fatalf("status %d after %d calls; want 401 after exactly 2", resp.StatusCode, len(api.auths))
	}
}

func TestTransportNoRetryForNonReplayableBody(t *testing.T) {
	dir, s := bearerVolume(t, "old")
	api := &fakeAPI{rejected: map[string]bool{"old": true}}
	api.onReject = func() { publish(t, dir, map[string][]byte{KeyAccessToken: []byte("new")}) }
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/", nil)
	req.Body = io.NopCloser(strings.NewReader("payload")) // a stream: no GetBody
	resp, err := NewTransport(s, api).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(api.auths) != 1 {
		t.Fatalf("status %d after %d calls; want the 401 after 1 call", resp.StatusCode, len(api.auths))
	}
}

func TestTransportReplaysBodyWithGetBody(t *testing.T) {
	dir, s := bearerVolume(t, "old")
	api := &fakeAPI{rejected: map[string]bool{"old": true}}
	api.onReject = func() { publish(t, dir, map[string][]byte{KeyAccessToken: []byte("new")}) }
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/records", bytes.NewReader([]byte(`{"id":1}`)))
	if req.GetBody == nil {
		t.Fatal("NewRequest did not set GetBody")
	}
	resp, err := NewTransport(s, api).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if want := []string{`{"id":1}`, `{"id":1}`}; !slices.Equal(api.bodies, want) {
		t.Fatalf("bodies sent %q, want %q", api.bodies, want)
	}
}

func TestTransportTokenError(t *testing.T) {
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(file)
	if err != nil {
		t.Fatal(err)
	}
	body := &trackedBody{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, "http://api.test/", body)
	api := &fakeAPI{}
	if _, err := NewTransport(s, api).RoundTrip(req); !errors.Is(err, ErrEmptyToken) {
		t.Fatalf("err %v, want ErrEmptyToken", err)
	}
	if len(api.auths) != 0 || !body.closed.Load() {
		t.Fatal("a request went out without a token, or its body was not closed")
	}
}

// End to end through http.Client and a real server on 127.0.0.1.
func TestTransportWithHTTPClient(t *testing.T) {
	dir, s := bearerVolume(t, "old")
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if string(body) != "record" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Authorization") != "Bearer new" {
			publish(t, dir, map[string][]byte{KeyAccessToken: []byte("new")}) // rotated meanwhile
			http.Error(w, "expired", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	client := &http.Client{Transport: NewTransport(s, srv.Client().Transport)}
	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("record"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || calls.Load() != 2 {
		t.Fatalf("status %d after %d calls", resp.StatusCode, calls.Load())
	}
}
