package devissuer

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"time"
)

// FOLIO authn (PROTOCOLS.md §1.3): tokens only in cookies, expiries in the body, every
// refresh failure is 422.
const (
	CookieAccessToken  = "folioAccessToken"
	CookieRefreshToken = "folioRefreshToken"
	HeaderTenant       = "X-Okapi-Tenant"
)

// folioClientID is the client FOLIO families belong to (Eureka's per-tenant login client).
// It is not in Config.Clients: such refresh tokens can only be used at /authn/*.
func (s *Server) folioClientID() string { return s.cfg.Tenant + "-login-application" }

type folioError struct {
	Message string `json:"message"`
	Type    string `json:"type,omitempty"`
	Code    string `json:"code,omitempty"`
}

func writeFolioError(w http.ResponseWriter, status int, msg, typ, code string) {
	writeJSON(w, status, map[string]any{
		"errors":        []folioError{{Message: msg, Type: typ, Code: code}},
		"total_records": 1,
	})
}

// checkTenant answers 400 and returns false when the tenant header is wrong; required
// says whether a missing header is wrong too.
func (s *Server) checkTenant(w http.ResponseWriter, r *http.Request, required bool) bool {
	t := r.Header.Get(HeaderTenant)
	switch {
	case t == "" && !required:
		return true
	case t == "":
		writeFolioError(w, http.StatusBadRequest, "X-Okapi-Tenant header is required", "RequestValidationException", "validation_error")
		return false
	case t != s.cfg.Tenant:
		writeFolioError(w, http.StatusBadRequest, "Tenant not found: "+t, "RequestValidationException", "validation_error")
		return false
	}
	return true
}

func setFolioCookies(w http.ResponseWriter, out *issued) {
	// No Secure attribute: this is a plain-HTTP server on loopback, and a client (Go's
	// cookiejar included) never sends a Secure cookie back over http.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: plain HTTP on loopback, see above
		Name: CookieAccessToken, Value: out.access, Path: "/", MaxAge: max(1, int(out.accessExpiry)),
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: plain HTTP on loopback, see above
		Name: CookieRefreshToken, Value: out.refresh, Path: "/authn", MaxAge: max(1, int(out.refreshExpiry)),
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func clearFolioCookies(w http.ResponseWriter) {
	for _, c := range []struct{ name, path string }{{CookieAccessToken, "/"}, {CookieRefreshToken, "/authn"}} {
		http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: clearing cookie, plain HTTP on loopback
			Name: c.name, Value: "", Path: c.path, MaxAge: -1, Expires: time.Unix(0, 0),
			HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
	}
}

func writeFolioTokens(w http.ResponseWriter, out *issued) {
	setFolioCookies(w, out)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{
		"accessTokenExpiration":  out.accessExp.UTC().Format(time.RFC3339),
		"refreshTokenExpiration": out.refreshExp.UTC().Format(time.RFC3339),
	})
}

// handleFolioLogin is POST /authn/login-with-expiry: JSON {username,password}, the
// X-Okapi-Tenant header required. Bad credentials: 422 (Okapi mod-login).
func (s *Server) handleFolioLogin(w http.ResponseWriter, r *http.Request) {
	switch s.faultGate(w, r, true) {
	case FaultDown:
		s.countToken(GrantKeyFolioLogin, ResultDown)
		return
	case FaultErrorRate:
		s.countToken(GrantKeyFolioLogin, ResultErrorRate)
		return
	}
	if !s.checkTenant(w, r, true) {
		s.countToken(GrantKeyFolioLogin, "folio_400")
		return
	}
	var creds struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&creds); err != nil || creds.Password == "" || creds.Username == "" {
		s.countToken(GrantKeyFolioLogin, "folio_400")
		writeFolioError(w, http.StatusBadRequest, "username and password are required", "RequestValidationException", "validation_error")
		return
	}
	iss := s.issuerFor(r)
	s.mu.Lock()
	want, ok := s.cfg.Users[creds.Username]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(creds.Password)) != 1 {
		s.countTokenLocked(GrantKeyFolioLogin, "folio_422")
		s.mu.Unlock()
		writeFolioError(w, http.StatusUnprocessableEntity, "Password does not match", "", "password.incorrect")
		return
	}
	now := s.clk.Now()
	ss := s.newSessionLocked(creds.Username, now)
	f := s.newFamilyLocked(ss, kindFolio, GrantKeyFolioLogin, s.folioClientID(), creds.Username, "openid", nil)
	out, gerr := s.mustIssueLocked(f, iss, true, now)
	if gerr != nil {
		s.countTokenLocked(GrantKeyFolioLogin, gerr.code)
		s.mu.Unlock()
		writeFolioError(w, http.StatusInternalServerError, gerr.desc, "", "")
		return
	}
	s.countTokenLocked(GrantKeyFolioLogin, ResultOK)
	s.mu.Unlock()
	writeFolioTokens(w, out)
}

// handleFolioRefresh is POST /authn/refresh: no body, Cookie folioRefreshToken. Any
// refresh failure (unknown, expired, used, session ended) is 422; reuse kills the family.
func (s *Server) handleFolioRefresh(w http.ResponseWriter, r *http.Request) {
	switch s.faultGate(w, r, true) {
	case FaultDown:
		s.countToken(GrantKeyFolioRefresh, ResultDown)
		return
	case FaultErrorRate:
		s.countToken(GrantKeyFolioRefresh, ResultErrorRate)
		return
	}
	if !s.checkTenant(w, r, false) {
		s.countToken(GrantKeyFolioRefresh, "folio_400")
		return
	}
	c, err := r.Cookie(CookieRefreshToken)
	if err != nil || c.Value == "" {
		s.countToken(GrantKeyFolioRefresh, "folio_400")
		writeFolioError(w, http.StatusBadRequest, "folioRefreshToken cookie is required", "RequestValidationException", "validation_error")
		return
	}
	iss := s.issuerFor(r)
	s.mu.Lock()
	out, gerr := s.refreshLocked(c.Value, s.folioClientID(), iss, s.clk.Now())
	drop := false
	switch {
	case gerr != nil:
		s.countTokenLocked(GrantKeyFolioRefresh, "folio_422")
	default:
		drop = s.takeDropLocked()
		if drop {
			s.countTokenLocked(GrantKeyFolioRefresh, ResultDropped)
		} else {
			s.countTokenLocked(GrantKeyFolioRefresh, ResultOK)
		}
	}
	s.mu.Unlock()
	if gerr != nil {
		msg := "Authorization server unable to process token refresh request: " + gerr.desc
		writeFolioError(w, http.StatusUnprocessableEntity, msg, "TokenRefreshException", "TOKEN_REFRESH_UNPROCESSABLE")
		return
	}
	if drop {
		s.log.Info("FOLIO refresh committed, answer dropped (injected fault)", "family", out.familyID)
		dropConnection(w)
		return
	}
	writeFolioTokens(w, out)
}

// handleFolioLogout is POST /authn/logout with Cookie folioRefreshToken: ends that
// token's session (Keycloak logout ends the whole user session). 204, cookies cleared;
// an unknown or already dead token is also 204 (idempotent). A missing cookie is 400.
func (s *Server) handleFolioLogout(w http.ResponseWriter, r *http.Request) {
	if s.faultGate(w, r, false) != "" {
		return
	}
	if !s.checkTenant(w, r, false) {
		return
	}
	c, err := r.Cookie(CookieRefreshToken)
	if err != nil || c.Value == "" {
		writeFolioError(w, http.StatusBadRequest, "folioRefreshToken cookie is required", "RequestValidationException", "validation_error")
		return
	}
	s.mu.Lock()
	if rec := s.refreshes[hashToken(c.Value)]; rec != nil && rec.fam.kind == kindFolio {
		n := s.endSessionLocked(rec.fam.session, s.clk.Now())
		s.c.Logouts++
		s.log.Info("FOLIO session logged out", "session", rec.fam.session.id, "families", n)
	}
	s.mu.Unlock()
	clearFolioCookies(w)
	w.WriteHeader(http.StatusNoContent)
}
