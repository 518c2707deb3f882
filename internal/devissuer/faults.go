package devissuer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Faults are injected at the identity-provider endpoints (/token, /revoke, /introspect,
// /logout, /authn/*). Discovery, /jwks, /api/records and /admin/* are never faulted.
type Faults struct {
	// Latency delays every identity-provider request by this much real time (not the
	// injected clock), before anything else happens.
	Latency time.Duration `json:"latency"`
	// ErrorRate is the fraction (0..1) of token-endpoint requests (/token,
	// /authn/login-with-expiry, /authn/refresh) answered 503 without Retry-After. The
	// spreading is deterministic: with 0.25 exactly every 4th request fails.
	ErrorRate float64 `json:"errorRate"`
	// CommitThenDrop: the next N successful refreshes (OAuth refresh_token grant or FOLIO
	// /authn/refresh) rotate the refresh token, then the connection is closed without an
	// answer. The refresh token the client sent is used: replaying it is reuse.
	CommitThenDrop int `json:"commitThenDrop"`
	// Down makes every identity-provider endpoint answer 503 with Retry-After: 1.
	Down bool `json:"down"`
}

// MarshalJSON writes Latency as a Go duration string ("250ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	type plain Faults
	return json.Marshal(struct {
		plain
		Latency string `json:"latency"`
	}{plain(f), f.Latency.String()})
}

// UnmarshalJSON accepts Latency as a duration string ("250ms") or integer nanoseconds.
// Unknown fields are an error, so that a misspelt fault is not silently ignored.
func (f *Faults) UnmarshalJSON(b []byte) error {
	type plain Faults
	aux := struct {
		*plain
		Latency json.RawMessage `json:"latency"`
	}{plain: (*plain)(f)}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&aux); err != nil {
		return err
	}
	f.Latency = 0
	if len(aux.Latency) == 0 || string(aux.Latency) == "null" {
		return nil
	}
	var str string
	if err := json.Unmarshal(aux.Latency, &str); err == nil {
		d, err := time.ParseDuration(str)
		if err != nil {
			return fmt.Errorf("faults.latency: %w", err)
		}
		f.Latency = d
		return nil
	}
	var ns int64
	if err := json.Unmarshal(aux.Latency, &ns); err != nil {
		return fmt.Errorf("faults.latency: want a duration string or nanoseconds")
	}
	f.Latency = time.Duration(ns)
	return nil
}

// SetFaults replaces the fault settings (and the CommitThenDrop budget) at once.
func (s *Server) SetFaults(f Faults) {
	if f.ErrorRate < 0 {
		f.ErrorRate = 0
	}
	if f.ErrorRate > 1 {
		f.ErrorRate = 1
	}
	if f.CommitThenDrop < 0 {
		f.CommitThenDrop = 0
	}
	if f.Latency < 0 {
		f.Latency = 0
	}
	s.mu.Lock()
	s.faults = f
	s.errAcc = 0
	s.mu.Unlock()
	s.log.Info("faults set", "latency", f.Latency, "errorRate", f.ErrorRate,
		"commitThenDrop", f.CommitThenDrop, "down", f.Down)
}

// CurrentFaults returns the fault settings, with the CommitThenDrop budget left.
// (Addition to the original sketch.)
func (s *Server) CurrentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// faultGate applies latency, Down and (for token endpoints) ErrorRate. It returns the
// fault kind it answered with (and wrote a 503), or "" to go on.
func (s *Server) faultGate(w http.ResponseWriter, r *http.Request, tokenEndpoint bool) string {
	s.mu.Lock()
	lat := s.faults.Latency
	s.mu.Unlock()
	if lat > 0 {
		s.countFault(FaultLatency)
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	s.mu.Lock()
	kind := ""
	switch {
	case s.faults.Down:
		kind = FaultDown
	case tokenEndpoint && s.faults.ErrorRate > 0:
		s.errAcc += s.faults.ErrorRate
		if s.errAcc >= 1-1e-9 {
			s.errAcc--
			kind = FaultErrorRate
		}
	}
	if kind != "" {
		s.c.FaultsInjected[kind]++
	}
	s.mu.Unlock()
	switch kind {
	case FaultDown:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, oauthErrBody{"temporarily_unavailable", "issuer is down (injected fault)"})
	case FaultErrorRate:
		writeJSON(w, http.StatusServiceUnavailable, oauthErrBody{"temporarily_unavailable", "injected error"})
	}
	return kind
}

// takeDropLocked consumes one CommitThenDrop unit. Caller holds s.mu.
func (s *Server) takeDropLocked() bool {
	if s.faults.CommitThenDrop <= 0 {
		return false
	}
	s.faults.CommitThenDrop--
	s.c.FaultsInjected[FaultCommitThenDrop]++
	return true
}

// dropConnection closes the client connection without writing any response.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
		return
	}
	// Not hijackable (HTTP/2, recorders): abort the handler; net/http drops the stream.
	panic(http.ErrAbortHandler)
}

func (s *Server) handleAdminFaults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, oauthErrBody{"invalid_request", err.Error()})
			return
		}
		s.SetFaults(f)
	}
	writeJSON(w, http.StatusOK, s.CurrentFaults())
}
