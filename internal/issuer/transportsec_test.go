package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// TestPlainHTTPRefusedForCredentials: without AllowPlainHTTP, an issuer whose token,
// revocation or FOLIO endpoint is plain http is a configuration error, and the transport
// refuses to write any call carrying a secret to an http:// URL, whatever its origin.
func TestPlainHTTPRefusedForCredentials(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder(t, respond(200, `{"access_token":"a","expires_in":60}`))
	for name, cfg := range map[string]OAuth2Config{
		"token":      {TokenURL: rec.URL + "/token"},
		"revocation": {TokenURL: "https://idp.example/token", RevocationURL: rec.URL + "/revoke"},
	} {
		cfg.ClientID, cfg.ClientSecret = "c", "s3cret"
		_, err := NewOAuth2(ctx, cfg)
		if e := asError(t, err); e.Class != ClassConfiguration || !strings.Contains(err.Error(), "plain http") || !strings.Contains(err.Error(), "insecureAllowPlainHTTP") {
			t.Errorf("%s endpoint on http: %v", name, err)
		}
	}
	var base string
	disco := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { respond(200, discoveryDocJSON(base, base))(w, r) })
	base = disco.URL
	if _, err := NewOAuth2(ctx, OAuth2Config{IssuerURL: base, ClientID: "c", ClientSecret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("discovered http token endpoint: %v", err)
	}
	if _, err := NewFOLIO(FOLIOConfig{BaseURL: rec.URL, Tenant: "t"}); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("FOLIO on http: %v", err)
	}
	// The transport's own guard, for any call with a secret.
	tr := newTransport(nil, nil)
	_, ierr := tr.do(ctx, call{op: "refresh", method: http.MethodPost, url: rec.URL + "/token", body: []byte("refresh_token=rt"), secrets: []string{"rt"}})
	if ierr == nil || ierr.Class != ClassConfiguration || !strings.Contains(ierr.Error(), "refusing to send credentials") {
		t.Errorf("transport: %v", ierr)
	}
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("the http server received %d request(s)", n)
	}
	// A call without secrets (discovery, JWKS) may use http; so may everything when allowed.
	if _, ierr := tr.do(ctx, call{op: "jwks", method: http.MethodGet, url: rec.URL + "/jwks", idempotent: true}); ierr != nil {
		t.Errorf("a call without secrets: %v", ierr)
	}
	tr.allowPlainHTTP = true
	if _, ierr := tr.do(ctx, call{op: "refresh", method: http.MethodPost, url: rec.URL + "/token", secrets: []string{"rt"}}); ierr != nil {
		t.Errorf("allowed: %v", ierr)
	}
}

// TestPrivateCA: an issuer whose certificate is signed by a private CA is reached with
// that CA as the only root, and refused (Configuration, before any request is written)
// with the system roots alone.
func TestPrivateCA(t *testing.T) {
	ctx := context.Background()
	var got atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		respond(200, `{"access_token":"a","expires_in":60}`)(w, r)
	}))
	srv.StartTLS() // listens on 127.0.0.1, certificate for 127.0.0.1 from its own CA
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA did not parse")
	}
	mk := func(opts HTTPOptions) *OAuth2 {
		o, err := NewOAuth2(ctx, OAuth2Config{TokenURL: srv.URL + "/token", ClientID: "c", ClientSecret: "s3cret", HTTPClient: NewHTTPClient(opts)})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	_, err := mk(HTTPOptions{}).Mint(ctx, Grant{Type: GrantClientCredentials})
	if e := asError(t, err); e.Class != ClassConfiguration || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("system roots only: %v", err)
	}
	if got.Load() != 0 {
		t.Fatalf("the request reached the server through an untrusted certificate")
	}
	if _, err := mk(HTTPOptions{RootCAs: pool}).Mint(ctx, Grant{Type: GrantClientCredentials}); err != nil {
		t.Fatalf("with the private CA: %v", err)
	}
	if got.Load() != 1 {
		t.Fatalf("%d requests", got.Load())
	}
}

// TestDiscoveryHostPinning: discovery may not move the token, revocation, introspection
// or JWKS endpoint to another host, port or (non-https) scheme than the issuer's, unless
// the issuer lists that host.
func TestDiscoveryHostPinning(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, field, endpoint string
		allowed               []string
		ok                    bool
	}{
		{"same host", "token_endpoint", "{base}/tok", nil, true},
		{"token on another host", "token_endpoint", "https://collector.example/token", nil, false},
		{"revocation on another port", "revocation_endpoint", "http://127.0.0.1:1/revoke", nil, false},
		{"jwks on another host", "jwks_uri", "https://keys.example/jwks", nil, false},
		{"introspection on another host", "introspection_endpoint", "https://collector.example/i", nil, false},
		{"listed host", "token_endpoint", "https://login.example:8443/token", []string{"login.example"}, true},
		{"listed host and port", "token_endpoint", "https://login.example:8443/token", []string{"login.example:8443"}, true},
		{"end_session is never called", "end_session_endpoint", "https://elsewhere.example/logout", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var base string
			rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				var doc map[string]any
				_ = json.Unmarshal([]byte(discoveryDocJSON(base, base)), &doc)
				doc[tc.field] = strings.ReplaceAll(tc.endpoint, "{base}", base)
				b, _ := json.Marshal(doc)
				respond(200, string(b))(w, r)
			})
			base = rec.URL
			_, err := Discover(ctx, nil, base, tc.allowed...)
			if tc.ok != (err == nil) {
				t.Fatalf("ok=%v, got %v", tc.ok, err)
			}
			if err != nil && (ClassOf(err) != ClassConfiguration || !strings.Contains(err.Error(), tc.field)) {
				t.Fatalf("the error does not name the field: %v", err)
			}
		})
	}
	issuer, _ := url.Parse("https://idp.example")
	if err := checkEndpointHost(issuer, "http://idp.example/token", nil); err == nil {
		t.Error("https issuer, http endpoint on its host: allowed")
	}
	plain, _ := url.Parse("http://idp.example")
	if err := checkEndpointHost(plain, "https://idp.example/token", nil); err != nil {
		t.Errorf("upgrade to https refused: %v", err)
	}
}

// TestNoRedirectWithCredentials: a token endpoint that answers with a redirect does not
// get its target a request (the credentials and the refresh token stay where they were
// sent); the 3xx is an error.
func TestNoRedirectWithCredentials(t *testing.T) {
	target := newRecorder(t, respond(200, `{"access_token":"a","expires_in":60}`))
	for _, code := range []int{301, 302, 303, 307, 308} {
		src := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/token", code)
		})
		o := newTestOAuth2(t, src.URL, nil)
		if _, err := o.Refresh(context.Background(), "rt-value"); err == nil {
			t.Errorf("%d: a redirect was taken for a token", code)
		}
		if err := o.Revoke(context.Background(), Revocation{RefreshToken: "rt-value"}); err == nil {
			t.Errorf("%d: a redirected revocation counted as success", code)
		}
	}
	if n := len(target.requests()); n != 0 {
		t.Fatalf("the redirect target received %d request(s)", n)
	}
}
