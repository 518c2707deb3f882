package devissuer

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefreshToken  = "urn:ietf:params:oauth:token-type:refresh_token"
)

type oauthErrBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, e *grantError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="devissuer"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, e.status, oauthErrBody{e.code, e.desc})
}

func invalidRequest(desc string) *grantError {
	return &grantError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

var errInvalidClient = &grantError{status: http.StatusUnauthorized, code: "invalid_client", desc: "Invalid client or Invalid client credentials"}

// tokenResponse is the token endpoint's JSON answer (RFC 6749 §5.1, Keycloak fields).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token,omitempty"`
	RefreshExpiresIn *int64 `json:"refresh_expires_in,omitempty"`
	Scope            string `json:"scope,omitempty"`
	SessionState     string `json:"session_state,omitempty"`
	IssuedTokenType  string `json:"issued_token_type,omitempty"`
}

func (i *issued) response() tokenResponse {
	r := tokenResponse{
		AccessToken: i.access, TokenType: "Bearer", ExpiresIn: i.accessExpiry,
		Scope: i.scope, SessionState: i.sessionID,
	}
	if i.refresh != "" {
		r.RefreshToken = i.refresh
		n := i.refreshExpiry
		r.RefreshExpiresIn = &n
	}
	return r
}

// parseForm reads an application/x-www-form-urlencoded body (bounded).
func parseForm(w http.ResponseWriter, r *http.Request) *grantError {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	if err := r.ParseForm(); err != nil {
		return invalidRequest("malformed form body")
	}
	return nil
}

// authClient checks client_secret_basic, then client_secret_post. It returns the client
// id, or "" when authentication failed.
func (s *Server) authClient(r *http.Request) string {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	want, ok := s.cfg.Clients[id]
	if id == "" || !ok || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return ""
	}
	return id
}

func grantKey(gt string) string {
	switch gt {
	case "password":
		return GrantKeyPassword
	case "client_credentials":
		return GrantKeyClientCredentials
	case "refresh_token":
		return GrantKeyRefreshToken
	case GrantTypeTokenExchange:
		return GrantKeyTokenExchange
	}
	return GrantKeyOther
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if e := parseForm(w, r); e != nil {
		s.countToken(GrantKeyOther, e.code)
		writeOAuthError(w, e)
		return
	}
	gt := r.PostForm.Get("grant_type")
	gk := grantKey(gt)
	switch s.faultGate(w, r, true) {
	case FaultDown:
		s.countToken(gk, ResultDown)
		return
	case FaultErrorRate:
		s.countToken(gk, ResultErrorRate)
		return
	}
	iss := s.issuerFor(r)
	s.mu.Lock()
	client := s.authClient(r)
	var (
		out  *issued
		gerr *grantError
		drop bool
	)
	switch {
	case client == "":
		gerr = errInvalidClient
	case gk == GrantKeyPassword:
		out, gerr = s.passwordLocked(r.PostForm, client, iss)
	case gk == GrantKeyClientCredentials:
		out, gerr = s.clientCredentialsLocked(r.PostForm, client, iss)
	case gk == GrantKeyRefreshToken:
		rt := r.PostForm.Get("refresh_token")
		if rt == "" {
			gerr = invalidRequest("Missing parameter: refresh_token")
			break
		}
		out, gerr = s.refreshLocked(rt, client, iss, s.clk.Now())
		if gerr == nil {
			drop = s.takeDropLocked()
		}
	case gk == GrantKeyTokenExchange:
		out, gerr = s.exchangeLocked(r.PostForm, client, iss)
	case gt == "":
		gerr = invalidRequest("Missing form parameter: grant_type")
	default:
		gerr = &grantError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "Unsupported grant_type"}
	}
	switch {
	case gerr != nil:
		s.countTokenLocked(gk, gerr.code)
	case drop:
		s.countTokenLocked(gk, ResultDropped)
	default:
		s.countTokenLocked(gk, ResultOK)
	}
	s.mu.Unlock()
	if gerr != nil {
		writeOAuthError(w, gerr)
		return
	}
	if drop {
		s.log.Info("refresh committed, answer dropped (injected fault)", "family", out.familyID, "client", client)
		dropConnection(w)
		return
	}
	resp := out.response()
	if gk == GrantKeyTokenExchange {
		resp.IssuedTokenType = TokenTypeAccessToken
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

func scopeOf(form url.Values, def string) string {
	if sc := strings.Join(strings.Fields(form.Get("scope")), " "); sc != "" {
		return sc
	}
	return def
}

func (s *Server) passwordLocked(form url.Values, client, iss string) (*issued, *grantError) {
	user, pass := form.Get("username"), form.Get("password")
	if user == "" {
		return nil, invalidRequest("Missing parameter: username")
	}
	want, ok := s.cfg.Users[user]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		return nil, invalidGrant(descBadCredentials)
	}
	now := s.clk.Now()
	ss := s.newSessionLocked(user, now)
	f := s.newFamilyLocked(ss, kindOAuth, GrantKeyPassword, client, user, scopeOf(form, "openid profile"), form["audience"])
	return s.mustIssueLocked(f, iss, true, now)
}

// clientCredentialsLocked mints an access token only: RFC 6749 §4.4.3 says a refresh
// token SHOULD NOT be included, and Keycloak does not by default. Re-mint instead.
func (s *Server) clientCredentialsLocked(form url.Values, client, iss string) (*issued, *grantError) {
	now := s.clk.Now()
	ss := s.newSessionLocked("", now)
	f := s.newFamilyLocked(ss, kindOAuth, GrantKeyClientCredentials, client, "service-account-"+client, scopeOf(form, "openid"), form["audience"])
	return s.mustIssueLocked(f, iss, false, now)
}

// exchangeLocked is RFC 8693: the subject token must be an active access token of this
// issuer that is in memory. The new family belongs to the same user (same sub). By
// default it joins the subject token's session, as Keycloak 26.2 standard token exchange
// does: same session maximum, and it ends with the user's logout (LogoutUser, /logout,
// a logout of that session). With Config.ExchangeOwnSession it starts a session of its
// own instead: its own session maximum from now, untouched by the user's logout.
func (s *Server) exchangeLocked(form url.Values, client, iss string) (*issued, *grantError) {
	st := form.Get("subject_token")
	if st == "" {
		return nil, invalidRequest("Missing parameter: subject_token")
	}
	if stt := form.Get("subject_token_type"); stt != TokenTypeAccessToken {
		return nil, invalidRequest("subject_token_type must be " + TokenTypeAccessToken)
	}
	switch form.Get("requested_token_type") {
	case "", TokenTypeAccessToken, TokenTypeRefreshToken:
	default:
		return nil, invalidRequest("requested_token_type unsupported")
	}
	// validateAccess takes s.mu itself.
	s.mu.Unlock()
	res := s.validateAccess(st, iss, 0)
	s.mu.Lock()
	if res.reason != "" || res.rec == nil {
		return nil, invalidGrant(descInvalidToken)
	}
	sf := res.rec.fam
	now := s.clk.Now()
	if dead, _ := sf.ended(now); dead {
		return nil, invalidGrant(descSessionNotAct)
	}
	ss := sf.session
	if s.cfg.ExchangeOwnSession {
		ss = s.newSessionLocked(sf.user, now)
		ss.exchangedFrom = sf.session.id
	}
	f := s.newFamilyLocked(ss, kindOAuth, GrantKeyTokenExchange, client, sf.subject, scopeOf(form, sf.scope), form["audience"])
	return s.mustIssueLocked(f, iss, true, now)
}

func (s *Server) mustIssueLocked(f *family, iss string, withRefresh bool, now time.Time) (*issued, *grantError) {
	out, err := s.issueLocked(f, iss, withRefresh, now)
	if err != nil {
		return nil, &grantError{status: http.StatusInternalServerError, code: "server_error", desc: "signing failed"}
	}
	return out, nil
}

// lookupLocked finds a token by hint order. Caller holds s.mu.
func (s *Server) lookupLocked(tok, hint string) (*refreshRec, *accessRec) {
	h := hashToken(tok)
	if hint == "access_token" {
		if a := s.accesses[h]; a != nil {
			return nil, a
		}
		return s.refreshes[h], nil
	}
	if r := s.refreshes[h]; r != nil {
		return r, nil
	}
	return nil, s.accesses[h]
}

// tokenEndpointRequest is what revocation and introspection share: the form, the fault
// gate, client authentication and the token parameter. On ok it returns with s.mu held;
// otherwise the answer is written and the lock is free.
func (s *Server) tokenEndpointRequest(w http.ResponseWriter, r *http.Request) (tok, client string, ok bool) {
	if e := parseForm(w, r); e != nil {
		writeOAuthError(w, e)
		return "", "", false
	}
	if s.faultGate(w, r, false) != "" {
		return "", "", false
	}
	tok = r.PostForm.Get("token")
	s.mu.Lock()
	client = s.authClient(r)
	if client == "" {
		s.mu.Unlock()
		writeOAuthError(w, errInvalidClient)
		return "", "", false
	}
	if tok == "" {
		s.mu.Unlock()
		writeOAuthError(w, invalidRequest("Missing parameter: token"))
		return "", "", false
	}
	return tok, client, true
}

// handleRevoke is RFC 7009. Revoking a refresh token revokes its family, access tokens
// included; revoking an access token revokes that token. Unknown tokens get 200.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	tok, client, ok := s.tokenEndpointRequest(w, r)
	if !ok {
		return
	}
	rt, at := s.lookupLocked(tok, r.PostForm.Get("token_type_hint"))
	var fam *family
	switch {
	case rt != nil:
		fam = rt.fam
	case at != nil:
		fam = at.fam
	}
	if fam != nil && fam.clientID != client {
		s.mu.Unlock()
		writeOAuthError(w, invalidRequest("Unmatching clients"))
		return
	}
	switch {
	case rt != nil:
		if s.revokeFamilyLocked(rt.fam, ReasonRevoked) {
			s.log.Info("family revoked", "family", rt.fam.id, "client", client, "user", rt.fam.user)
		}
	case at != nil:
		at.revoked = true
	}
	s.c.Revocations++
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// handleIntrospect is RFC 7662. token_type is "access_token" or "refresh_token" (the
// RFC 7009 hint vocabulary). Introspecting a used refresh token has no side effect.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	tok, _, ok := s.tokenEndpointRequest(w, r)
	if !ok {
		return
	}
	s.c.Introspections++
	now := s.clk.Now()
	rt, _ := s.lookupLocked(tok, r.PostForm.Get("token_type_hint"))
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	inactive := map[string]any{"active": false}
	if rt != nil {
		s.mu.Lock()
		f := rt.fam
		dead, _ := f.ended(now)
		active := !dead && !rt.used && now.Before(rt.expires)
		body := map[string]any{
			"active": true, "token_type": "refresh_token", "exp": rt.expires.Unix(),
			"sub": f.subject, "client_id": f.clientID, "scope": f.scope, "sid": f.session.id,
		}
		if f.user != "" {
			body["username"] = f.user
		}
		s.mu.Unlock()
		if !active {
			body = inactive
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	res := s.validateAccess(tok, s.issuerFor(r), 0)
	if res.reason != "" {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	c := res.claims
	body := map[string]any{
		"active": true, "token_type": "access_token", "exp": c.ExpiresAt.Unix(), "iat": c.IssuedAt.Unix(),
		"sub": c.Subject, "client_id": c.ClientID, "scope": c.Scope, "iss": c.Issuer, "jti": c.ID,
		"aud": c.Audience, "sid": c.Sid,
	}
	if c.PreferredUsername != "" {
		body["username"] = c.PreferredUsername
	}
	writeJSON(w, http.StatusOK, body)
}

// handleLogout serves /logout and /admin/logout.
//
//   - ?user=NAME (query or form): the user logs out; all of the user's sessions end.
//     Answers 200 {"user":NAME,"familiesEnded":N}.
//   - form refresh_token plus client authentication (Keycloak's non-browser logout): ends
//     the refresh token's whole session, every family in it. Answers 204.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if e := parseForm(w, r); e != nil {
		writeOAuthError(w, e)
		return
	}
	if s.faultGate(w, r, false) != "" {
		return
	}
	if user := r.Form.Get("user"); user != "" {
		n := s.LogoutUser(user)
		writeJSON(w, http.StatusOK, map[string]any{"user": user, "familiesEnded": n})
		return
	}
	rt := r.PostForm.Get("refresh_token")
	if rt == "" {
		writeOAuthError(w, invalidRequest("user or refresh_token required"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	client := s.authClient(r)
	if client == "" {
		writeOAuthError(w, errInvalidClient)
		return
	}
	rec := s.refreshes[hashToken(rt)]
	now := s.clk.Now()
	if rec == nil {
		writeOAuthError(w, invalidGrant(descInvalidRT))
		return
	}
	if rec.fam.clientID != client {
		writeOAuthError(w, invalidGrant(descClientMismatch))
		return
	}
	if dead, _ := rec.fam.ended(now); dead {
		writeOAuthError(w, invalidGrant(descSessionNotAct))
		return
	}
	n := s.endSessionLocked(rec.fam.session, now)
	s.c.Logouts++
	s.log.Info("session logged out", "session", rec.fam.session.id, "families", n)
	w.WriteHeader(http.StatusNoContent)
}

// handleDiscovery serves OIDC discovery and RFC 8414 metadata (the same document).
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := s.issuerFor(r)
	auth := []string{"client_secret_basic", "client_secret_post"}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                 iss,
		"token_endpoint":         iss + "/token",
		"revocation_endpoint":    iss + "/revoke",
		"introspection_endpoint": iss + "/introspect",
		"jwks_uri":               iss + "/jwks",
		"end_session_endpoint":   iss + "/logout",
		"grant_types_supported": []string{
			"password", "client_credentials", "refresh_token", GrantTypeTokenExchange,
		},
		"token_endpoint_auth_methods_supported":         auth,
		"revocation_endpoint_auth_methods_supported":    auth,
		"introspection_endpoint_auth_methods_supported": auth,
		"response_types_supported":                      []string{"token"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{"RS256"},
		"scopes_supported":                              []string{"openid", "profile", "offline_access"},
		"claims_supported":                              []string{"iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "azp", "sid", "preferred_username"},
	})
}
