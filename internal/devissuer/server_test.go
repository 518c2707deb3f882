package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFreshKeyEveryStart(t *testing.T) {
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() == "" || a.KeyID() == b.KeyID() {
		t.Fatalf("kids %q %q, want two different fresh keys", a.KeyID(), b.KeyID())
	}
}

func TestKeyFileKeepsKid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "issuer.pem")
	a, err := New(Config{KeyFile: path}) // missing: created
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode().Perm())
	}
	b, err := New(Config{KeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() {
		t.Fatalf("kid changed across starts with the same KeyFile: %s %s", a.KeyID(), b.KeyID())
	}

	// A PKCS#8 key is accepted too.
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p8 := filepath.Join(dir, "p8.pem")
	if err := os.WriteFile(p8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{KeyFile: p8})
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyID() != thumbprint(&priv.PublicKey) {
		t.Errorf("PKCS#8 kid %s", c.KeyID())
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{KeyFile: bad}); err == nil {
		t.Error("garbage key file accepted")
	}
}

func TestKeyFileTokenSurvivesRestart(t *testing.T) {
	// Served through Handler (no Start), the issuer is the request's host, so two servers
	// behind the same httptest URL stand in for one issuer restarted with its KeyFile.
	var cur http.Handler
	var mu sync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hd := cur
		mu.Unlock()
		hd.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	cfg := Config{Clients: map[string]string{jobClient: jobSecret}, KeyFile: sharedKeyFile}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.URL() != "" {
		t.Errorf("URL before Start = %q", a.URL())
	}
	mu.Lock()
	cur = a.Handler()
	mu.Unlock()
	res, err := http.PostForm(ts.URL+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {jobClient}, "client_secret": {jobSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	decodeJSON(t, res, &tr)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	cur = b.Handler()
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/records", nil)
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("token from before the restart: %d", res.StatusCode)
	}
	// Discovery derives the issuer from the request when not started.
	res, err = http.Get(ts.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	decodeJSON(t, res, &doc)
	if doc.Issuer != ts.URL {
		t.Errorf("issuer %q, want %q", doc.Issuer, ts.URL)
	}
}

func TestStartDefaults(t *testing.T) {
	s, err := New(Config{KeyFile: sharedKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("URL %q", s.URL())
	}
	if err := s.Start(""); err == nil {
		t.Error("second Start succeeded")
	}
	res, err := http.Get(s.URL() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Get(s.URL() + "/jwks"); err == nil {
		t.Error("still serving after Close")
	}
	if _, err := New(Config{AccessTokenTTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
}

func TestTTLRoundedToSeconds(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AccessTokenTTL = 1500 * time.Millisecond })
	h.clk.Step(700 * time.Millisecond) // not on a whole second
	r := h.mustPassword()
	if r.num("expires_in") != 2 {
		t.Errorf("expires_in %d, want 2", r.num("expires_in"))
	}
}

// Concurrent refreshes of one refresh token: exactly one wins, the others are reuse and
// the family is dead (the race jobtoken's single-flight refresh exists to avoid).
func TestConcurrentRefreshSameToken(t *testing.T) {
	h := newHarness(t, nil)
	rt := h.mustPassword().str("refresh_token")
	const n = 4
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {jobClient}, "client_secret": {jobSecret}}
			res, err := h.hc.PostForm(h.url+"/token", form)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for st := range statuses {
		if st == http.StatusOK {
			ok++
		}
	}
	c := h.s.Counters()
	if ok != 1 || c.Refreshes != 1 || c.RefreshReuse < 1 || c.FamiliesRevoked != 1 || c.ActiveFamilies != 0 {
		t.Errorf("ok %d refreshes %d reuse %d revoked %d active %d", ok, c.Refreshes, c.RefreshReuse, c.FamiliesRevoked, c.ActiveFamilies)
	}
}

// Many independent chains in parallel, with snapshots and fault changes, for -race.
func TestConcurrentChains(t *testing.T) {
	h := newHarness(t, nil)
	const workers, rounds = 6, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			r := h.mustPassword()
			for range rounds {
				if st, reason := h.records(http.MethodPost, r.str("access_token")); st != http.StatusOK {
					t.Errorf("records: %d %s", st, reason)
					return
				}
				r = h.mustRefresh(r.str("refresh_token"))
			}
		})
	}
	wg.Go(func() {
		for range rounds {
			_ = h.s.Counters()
			h.s.SetFaults(Faults{})
			_ = h.s.Active("nothing")
		}
	})
	wg.Wait()
	c := h.s.Counters()
	if c.Refreshes != workers*rounds || c.ResourceAccepted != workers*rounds || c.ActiveFamilies != workers || c.RefreshReuse != 0 {
		t.Errorf("refreshes %d accepted %d active %d reuse %d", c.Refreshes, c.ResourceAccepted, c.ActiveFamilies, c.RefreshReuse)
	}
}

func TestPruneKeepsLiveFamilies(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RefreshTokenTTL = time.Hour })
	old := h.mustPassword()
	live := h.mustPassword()
	// Bounded: keep "live" refreshed past old's expiry plus the prune grace; each refresh
	// runs a prune pass.
	for range 3 {
		h.clk.Step(50 * time.Minute)
		live = h.mustRefresh(live.str("refresh_token"))
	}
	h.s.mu.Lock()
	nFam, nSess := len(h.s.families), len(h.s.sessions)
	h.s.mu.Unlock()
	if nFam != 1 || nSess != 1 {
		t.Errorf("after prune: %d families, %d sessions, want 1 and 1", nFam, nSess)
	}
	wantOAuthError(t, h.refresh(jobClient, jobSecret, old.str("refresh_token")), 400, "invalid_grant", "Invalid refresh token")
	h.wantRecords(live.str("access_token"), http.StatusOK, "")
}

func decodeJSON(t *testing.T, res *http.Response, v any) {
	t.Helper()
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
