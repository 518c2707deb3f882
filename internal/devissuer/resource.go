package devissuer

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// handleRecords is the protected resource (the simulated import API), GET and POST
// /api/records. It takes "Authorization: Bearer <AT>" (or FOLIO's X-Okapi-Token) and
// answers 200 {"status":"accepted",...} or 401 with a reason: "invalid" (missing,
// malformed, bad signature or issuer), "unknown_kid" (key not in the current JWKS),
// "expired" (past exp + Leeway), "revoked" (token or family revoked, session logged out).
func (s *Server) handleRecords(w http.ResponseWriter, r *http.Request) {
	var n int64
	if r.Method == http.MethodPost {
		n, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20))
	}
	tok := bearer(r)
	res := s.validateAccess(tok, s.issuerFor(r), s.leeway)
	s.mu.Lock()
	if res.reason != "" {
		s.c.Resource401[res.reason]++
		s.c.Resource401Total++
		s.mu.Unlock()
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="devissuer", error="invalid_token", error_description=%q`, res.reason))
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "reason": res.reason})
		return
	}
	s.c.ResourceAccepted++
	s.c.ResourceAcceptedBySubject[res.claims.Subject]++
	s.c.ResourceAcceptedByClient[res.claims.Azp]++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "accepted", "subject": res.claims.Subject, "clientId": res.claims.Azp,
		"method": r.Method, "bytes": n,
	})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return r.Header.Get("X-Okapi-Token")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
