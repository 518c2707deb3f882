package devissuer

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clocktesting "k8s.io/utils/clock/testing"
)

// t0 is the fake clock's start, a whole second.
var t0 = time.Unix(1_800_000_000, 0)

// sharedKeyFile holds one RSA key generated once for the whole test binary, so that
// tests that do not care about keys do not each pay for RSA key generation.
var sharedKeyFile string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "devissuer-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedKeyFile = filepath.Join(dir, "key.pem")
	if _, err := loadOrCreateKey(sharedKeyFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	jobClient    = "job"
	jobSecret    = "job-secret"
	uiClient     = "ui"
	uiSecret     = "ui-secret"
	alice        = "alice"
	alicePass    = "alice-pw"
	bob          = "bob"
	bobPass      = "bob-pw"
	testTenant   = "diku"
	exchangeType = GrantTypeTokenExchange
)

type harness struct {
	t   *testing.T
	s   *Server
	clk *clocktesting.FakeClock
	hc  *http.Client
	url string
}

// newHarness starts a server on 127.0.0.1:0 with a fake clock at t0, two clients (job,
// ui) and two users (alice, bob). mod may adjust the config.
func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	cfg := Config{
		Clients: map[string]string{jobClient: jobSecret, uiClient: uiSecret},
		Users:   map[string]string{alice: alicePass, bob: bobPass},
		KeyFile: sharedKeyFile,
		Clock:   clk,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tr := &http.Transport{}
	h := &harness{t: t, s: s, clk: clk, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, url: s.URL()}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// resp is a decoded HTTP answer.
type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
	cookie map[string]*http.Cookie
}

func (r resp) str(k string) string {
	v, _ := r.body[k].(string)
	return v
}

func (r resp) num(k string) int64 {
	v, ok := r.body[k].(float64)
	if !ok {
		return -1
	}
	return int64(v)
}

func (h *harness) do(req *http.Request) resp {
	h.t.Helper()
	res, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("read body: %v", err)
	}
	out := resp{status: res.StatusCode, header: res.Header, raw: raw, cookie: map[string]*http.Cookie{}}
	for _, c := range res.Cookies() {
		out.cookie[c.Name] = c
	}
	if len(raw) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			h.t.Fatalf("decode %s: %v", req.URL.Path, err)
		}
	}
	return out
}

func (h *harness) newRequest(method, path string, body io.Reader) *http.Request {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	return req
}

func (h *harness) get(path string) resp {
	h.t.Helper()
	return h.do(h.newRequest(http.MethodGet, path, nil))
}

// post sends a form with client_secret_basic when clientID is not empty.
func (h *harness) post(path, clientID, secret string, form url.Values) resp {
	h.t.Helper()
	req := h.newRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	return h.do(req)
}

func (h *harness) token(clientID, secret string, form url.Values) resp {
	h.t.Helper()
	return h.post("/token", clientID, secret, form)
}

func (h *harness) password(clientID, secret, user, pass string) resp {
	h.t.Helper()
	return h.token(clientID, secret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}})
}

// mustPassword is a successful password grant for alice through the job client.
func (h *harness) mustPassword() resp {
	h.t.Helper()
	r := h.password(jobClient, jobSecret, alice, alicePass)
	if r.status != http.StatusOK {
		h.t.Fatalf("password grant: %d %s", r.status, r.raw)
	}
	return r
}

func (h *harness) refresh(clientID, secret, rt string) resp {
	h.t.Helper()
	return h.token(clientID, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func (h *harness) mustRefresh(rt string) resp {
	h.t.Helper()
	r := h.refresh(jobClient, jobSecret, rt)
	if r.status != http.StatusOK {
		h.t.Fatalf("refresh: %d %s", r.status, r.raw)
	}
	return r
}

func (h *harness) exchange(clientID, secret, subjectToken string) resp {
	h.t.Helper()
	return h.token(clientID, secret, url.Values{
		"grant_type":         {exchangeType},
		"subject_token":      {subjectToken},
		"subject_token_type": {TokenTypeAccessToken},
	})
}

// records calls the protected resource and returns the status and the 401 reason.
func (h *harness) records(method, at string) (int, string) {
	h.t.Helper()
	req := h.newRequest(method, "/api/records", strings.NewReader(`{"id":1}`))
	if at != "" {
		req.Header.Set("Authorization", "Bearer "+at)
	}
	r := h.do(req)
	return r.status, r.str("reason")
}

func (h *harness) wantRecords(at string, status int, reason string) {
	h.t.Helper()
	gotStatus, gotReason := h.records(http.MethodGet, at)
	if gotStatus != status || gotReason != reason {
		h.t.Fatalf("/api/records: got %d %q, want %d %q", gotStatus, gotReason, status, reason)
	}
}

func wantOAuthError(t *testing.T, r resp, status int, code, desc string) {
	t.Helper()
	if r.status != status || r.str("error") != code || (desc != "" && r.str("error_description") != desc) {
		t.Fatalf("got %d %s, want %d %s %q", r.status, r.raw, status, code, desc)
	}
}

func (h *harness) introspect(tok string) resp {
	h.t.Helper()
	r := h.post("/introspect", jobClient, jobSecret, url.Values{"token": {tok}})
	if r.status != http.StatusOK {
		h.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r
}

// jwksKeys fetches /jwks and returns the public keys by kid.
func (h *harness) jwksKeys() map[string]*rsa.PublicKey {
	h.t.Helper()
	r := h.get("/jwks")
	if r.status != http.StatusOK {
		h.t.Fatalf("/jwks: %d", r.status)
	}
	var doc struct{ Keys []JWK }
	if err := json.Unmarshal(r.raw, &doc); err != nil {
		h.t.Fatal(err)
	}
	out := map[string]*rsa.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid == "" {
			h.t.Fatalf("bad JWK %+v", k)
		}
		n, err := base64.RawURLEncoding.DecodeString(k.N)
		if err != nil {
			h.t.Fatal(err)
		}
		e, err := base64.RawURLEncoding.DecodeString(k.E)
		if err != nil {
			h.t.Fatal(err)
		}
		out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	return out
}

// parseAT verifies an access token against the published JWKS at the fake clock's time.
func (h *harness) parseAT(at string) (*jwt.Token, jwt.MapClaims) {
	h.t.Helper()
	keys := h.jwksKeys()
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(at, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k := keys[kid]
		if k == nil {
			return nil, fmt.Errorf("kid %q not in JWKS", kid)
		}
		return k, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(h.url),
		jwt.WithTimeFunc(h.clk.Now), jwt.WithExpirationRequired())
	if err != nil {
		h.t.Fatalf("access token does not verify: %v", err)
	}
	return tok, claims
}
