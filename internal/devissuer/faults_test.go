package devissuer

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCommitThenDrop(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	rt := p.str("refresh_token")
	h.s.SetFaults(Faults{CommitThenDrop: 1})

	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req := h.newRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(jobClient, jobSecret)
	res, err := h.hc.Do(req)
	if err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("refresh answered %d %q, want the connection closed without a response", res.StatusCode, body)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("unexpected client error: %v", err)
	}
	c := h.s.Counters()
	if c.Refreshes != 1 || c.FaultsInjected[FaultCommitThenDrop] != 1 || c.TokenRequests[GrantKeyRefreshToken][ResultDropped] != 1 {
		t.Fatalf("after drop: Refreshes %d faults %v requests %v", c.Refreshes, c.FaultsInjected, c.TokenRequests)
	}
	if h.s.CurrentFaults().CommitThenDrop != 0 {
		t.Error("CommitThenDrop budget not consumed")
	}
	// The refresh token the client sent was used: replaying it is reuse, and it kills the
	// family, including the pair the client never saw.
	if h.s.Active(rt) {
		t.Error("sent RT still active")
	}
	wantOAuthError(t, h.refresh(jobClient, jobSecret, rt), 400, "invalid_grant", "Maximum allowed refresh token reuse exceeded")
	h.wantRecords(p.str("access_token"), http.StatusUnauthorized, Reason401Revoked)
	c = h.s.Counters()
	if c.RefreshReuse != 1 || c.FamiliesRevoked != 1 || c.ActiveFamilies != 0 {
		t.Errorf("after replay: reuse %d revoked %d active %d", c.RefreshReuse, c.FamiliesRevoked, c.ActiveFamilies)
	}
	// The budget is spent: the next refresh is answered normally.
	h.mustRefresh(h.mustPassword().str("refresh_token"))
}

func TestDown(t *testing.T) {
	h := newHarness(t, nil)
	p := h.mustPassword()
	h.s.SetFaults(Faults{Down: true})
	for _, r := range []resp{
		h.password(jobClient, jobSecret, alice, alicePass),
		h.refresh(jobClient, jobSecret, p.str("refresh_token")),
		h.post("/revoke", jobClient, jobSecret, url.Values{"token": {p.str("refresh_token")}}),
		h.post("/introspect", jobClient, jobSecret, url.Values{"token": {p.str("access_token")}}),
	} {
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
			t.Fatalf("down: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
	}
	// Discovery, JWKS and the protected resource stay up; nothing was consumed.
	if r := h.get("/.well-known/openid-configuration"); r.status != http.StatusOK {
		t.Errorf("discovery while down: %d", r.status)
	}
	h.wantRecords(p.str("access_token"), http.StatusOK, "")
	c := h.s.Counters()
	if c.FaultsInjected[FaultDown] != 4 || c.TokenRequests[GrantKeyPassword][ResultDown] != 1 || c.TokenRequests[GrantKeyRefreshToken][ResultDown] != 1 {
		t.Errorf("faults %v requests %v", c.FaultsInjected, c.TokenRequests)
	}
	h.s.SetFaults(Faults{})
	h.mustRefresh(p.str("refresh_token"))
}

func TestErrorRate(t *testing.T) {
	h := newHarness(t, nil)
	h.s.SetFaults(Faults{ErrorRate: 0.25})
	var got []int
	for range 8 {
		r := h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}})
		got = append(got, r.status)
	}
	want := []int{200, 200, 200, 503, 200, 200, 200, 503}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
	c := h.s.Counters()
	if c.FaultsInjected[FaultErrorRate] != 2 || c.TokenRequests[GrantKeyClientCredentials][ResultErrorRate] != 2 {
		t.Errorf("faults %v", c.FaultsInjected)
	}
	// Revocation is not a token endpoint: never hit by ErrorRate.
	h.s.SetFaults(Faults{ErrorRate: 1})
	if r := h.post("/revoke", jobClient, jobSecret, url.Values{"token": {"x"}}); r.status != http.StatusOK {
		t.Errorf("revoke with ErrorRate 1: %d", r.status)
	}
	if r := h.token(jobClient, jobSecret, url.Values{"grant_type": {"client_credentials"}}); r.status != http.StatusServiceUnavailable {
		t.Errorf("ErrorRate 1: %d", r.status)
	}
}

func TestLatency(t *testing.T) {
	h := newHarness(t, nil)
	h.s.SetFaults(Faults{Latency: 50 * time.Millisecond})
	start := time.Now()
	h.mustPassword()
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
	if h.s.Counters().FaultsInjected[FaultLatency] != 1 {
		t.Error("latency not counted")
	}
}

func TestAdminFaultsAndCounters(t *testing.T) {
	h := newHarness(t, nil)
	req := h.newRequest(http.MethodPost, "/admin/faults", strings.NewReader(`{"latency":"1ms","errorRate":0.5,"commitThenDrop":2,"down":true}`))
	req.Header.Set("Content-Type", "application/json")
	r := h.do(req)
	if r.status != http.StatusOK || r.str("latency") != "1ms" || r.num("commitThenDrop") != 2 || r.body["down"] != true {
		t.Fatalf("/admin/faults: %d %s", r.status, r.raw)
	}
	f := h.s.CurrentFaults()
	if f.Latency != time.Millisecond || f.ErrorRate != 0.5 || f.CommitThenDrop != 2 || !f.Down {
		t.Fatalf("faults %+v", f)
	}
	bad := h.do(h.newRequest(http.MethodPost, "/admin/faults", strings.NewReader(`{"nope":1}`)))
	if bad.status != http.StatusBadRequest {
		t.Errorf("unknown field: %d", bad.status)
	}
	h.do(h.newRequest(http.MethodPost, "/admin/faults", strings.NewReader(`{}`)))
	if f := h.s.CurrentFaults(); f != (Faults{}) {
		t.Errorf("faults not cleared: %+v", f)
	}

	h.wantRecords(h.mustPassword().str("access_token"), http.StatusOK, "")
	cr := h.get("/admin/counters")
	if cr.status != http.StatusOK {
		t.Fatalf("/admin/counters: %d", cr.status)
	}
	var c Counters
	if err := json.Unmarshal(cr.raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.TokenRequests[GrantKeyPassword][ResultOK] != 1 || c.ResourceAccepted != 1 || c.ActiveFamilies != 1 || c.FaultsInjected == nil {
		t.Errorf("counters %s", cr.raw)
	}
	for _, k := range []string{
		"tokenRequests", "refreshes", "refreshReuse", "familiesRevoked", "sessionMaxEnded", "revocations",
		"introspections", "resourceAccepted", "resource401", "keyRotations", "faultsInjected", "activeFamilies",
	} {
		if _, ok := cr.body[k]; !ok {
			t.Errorf("counters JSON lacks %q", k)
		}
	}
}
