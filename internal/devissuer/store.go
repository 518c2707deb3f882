package devissuer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// pruneGrace is how long expired token records are kept, so that a late replay is still
// answered precisely ("Token is not active") instead of "Invalid refresh token".
const pruneGrace = time.Hour

const (
	kindOAuth = "oauth"
	kindFolio = "folio"
)

// session is what a login creates (password grant, FOLIO login, client_credentials).
// Token exchange adds a family to the subject token's session, like Keycloak 26.2 standard
// token exchange, so it shares the session maximum and ends with the user's logout; with
// Config.ExchangeOwnSession it creates a session of its own instead.
type session struct {
	id    string
	user  string    // "" for a client's own session (client_credentials)
	start time.Time // whole seconds
	end   time.Time // zero: no maximum
	ended bool      // logged out
	// exchangedFrom is the subject token's session id when a token exchange created this
	// session (Config.ExchangeOwnSession); LogoutUser leaves such sessions alone.
	exchangedFrom string
	families      map[string]*family
}

// family is one refresh chain: every token minted from one grant and its refreshes.
type family struct {
	id       string
	kind     string // kindOAuth or kindFolio
	grant    string // GrantKey* that started it
	clientID string
	subject  string
	user     string
	scope    string
	audience []string
	session  *session
	revoked  string // "" or Reason*
	current  *refreshRec
	lastAT   time.Time // expiry of its newest access token
	records  int       // token records held in the maps, for pruning
}

type refreshRec struct {
	fam     *family
	expires time.Time
	used    bool
}

type accessRec struct {
	fam     *family
	expires time.Time
	revoked bool
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b64(b)
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return string(sum[:])
}

// ended reports whether the family can no longer be used and why: a Reason* for explicit
// ends, "session_max" when the session maximum has passed.
func (f *family) ended(now time.Time) (bool, string) {
	switch {
	case f.session.ended:
		return true, ReasonLogout
	case f.revoked != "":
		return true, f.revoked
	case !f.session.end.IsZero() && !now.Before(f.session.end):
		return true, "session_max"
	}
	return false, ""
}

// killed reports an explicit end (revocation, reuse, logout); the session maximum passing
// does not count, the tokens are merely expired then.
func (f *family) killed() bool { return f.revoked != "" || f.session.ended }

func (s *Server) newSessionLocked(user string, now time.Time) *session {
	s.pruneLocked(now) // before the new session exists: it has no records yet
	now = wholeSeconds(now)
	ss := &session{id: randomID(), user: user, start: now, families: map[string]*family{}}
	if s.cfg.SessionMax > 0 {
		ss.end = now.Add(s.cfg.SessionMax)
	}
	s.sessions[ss.id] = ss
	return ss
}

func (s *Server) newFamilyLocked(ss *session, kind, grant, clientID, subject, scope string, audience []string) *family {
	f := &family{
		id: randomID(), kind: kind, grant: grant, clientID: clientID, subject: subject,
		user: ss.user, scope: scope, audience: audience, session: ss,
	}
	ss.families[f.id] = f
	s.families[f.id] = f
	return f
}

// issued is a freshly minted pair, with exact expiry times.
type issued struct {
	access        string
	accessExp     time.Time // as in the JWT (whole seconds)
	refresh       string    // "" when no refresh token was issued
	refreshExp    time.Time
	scope         string
	sessionID     string
	familyID      string
	accessExpiry  int64 // expires_in
	refreshExpiry int64 // refresh_expires_in
}

// atClaims are the access token claims.
type atClaims struct {
	jwt.RegisteredClaims
	Scope             string `json:"scope,omitempty"`
	ClientID          string `json:"client_id"`
	Azp               string `json:"azp"`
	Sid               string `json:"sid"`
	Typ               string `json:"typ"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Tenant            string `json:"tenant,omitempty"`
}

// issueLocked mints an access token and, when withRefresh, a refresh token for f.
// Caller holds s.mu.
//
// Like Keycloak, it counts in whole seconds: iat is now rounded down, exp is iat plus the
// TTL (capped by the session end), so expires_in is exactly the TTL.
func (s *Server) issueLocked(f *family, iss string, withRefresh bool, now time.Time) (*issued, error) {
	now = wholeSeconds(now)
	atExp := now.Add(s.cfg.AccessTokenTTL)
	if end := f.session.end; !end.IsZero() && end.Before(atExp) {
		atExp = end
	}
	key := s.keys[len(s.keys)-1]
	aud := append([]string{f.clientID}, f.audience...)
	claims := atClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss,
			Subject:   f.subject,
			Audience:  jwt.ClaimStrings(aud),
			ExpiresAt: jwt.NewNumericDate(atExp),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomID(),
		},
		Scope: f.scope, ClientID: f.clientID, Azp: f.clientID, Sid: f.session.id, Typ: "Bearer",
		PreferredUsername: f.user,
	}
	if f.kind == kindFolio {
		claims.Tenant = s.cfg.Tenant
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = key.kid
	at, err := tok.SignedString(key.priv)
	if err != nil {
		return nil, err
	}
	s.accesses[hashToken(at)] = &accessRec{fam: f, expires: atExp}
	f.records++
	f.lastAT = atExp
	s.c.AccessTokensIssued++
	s.recordIssuedLocked(&s.issued.Access, at)
	out := &issued{
		access: at, accessExp: atExp, scope: f.scope, sessionID: f.session.id, familyID: f.id,
		accessExpiry: secondsUntil(now, atExp),
	}
	if withRefresh {
		rtExp := now.Add(s.cfg.RefreshTokenTTL)
		if end := f.session.end; !end.IsZero() && end.Before(rtExp) {
			rtExp = end
		}
		rt := randomString(32)
		rec := &refreshRec{fam: f, expires: rtExp}
		s.refreshes[hashToken(rt)] = rec
		f.records++
		f.current = rec
		s.c.RefreshTokensIssued++
		s.recordIssuedLocked(&s.issued.Refresh, rt)
		out.refresh, out.refreshExp, out.refreshExpiry = rt, rtExp, secondsUntil(now, rtExp)
	}
	return out, nil
}

// wholeSeconds rounds t down to a whole Unix second (and drops the monotonic reading).
func wholeSeconds(t time.Time) time.Time { return time.Unix(t.Unix(), 0) }

func secondsUntil(now, t time.Time) int64 {
	d := t.Sub(now)
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// grantError is an OAuth error (RFC 6749 §5.2) with its HTTP status.
type grantError struct {
	status int
	code   string
	desc   string
}

func (e *grantError) Error() string { return e.code + ": " + e.desc }

func invalidGrant(desc string) *grantError {
	return &grantError{status: 400, code: "invalid_grant", desc: desc}
}

// Keycloak's error_description values (PROTOCOLS.md §2.3).
const (
	descInvalidRT       = "Invalid refresh token"
	descClientMismatch  = "Invalid refresh token. Token client and authorized client don't match"
	descNotActive       = "Token is not active"
	descSessionNotAct   = "Session not active"
	descReuse           = "Maximum allowed refresh token reuse exceeded"
	descNoRequiredClent = "Session doesn't have required client"
	descBadCredentials  = "Invalid user credentials"
	descInvalidToken    = "Invalid token"
)

// refreshLocked redeems a refresh token for clientID: rotation, reuse detection, session
// maximum. On success the old token is used and a new pair is returned. Caller holds s.mu.
func (s *Server) refreshLocked(rt, clientID, iss string, now time.Time) (*issued, *grantError) {
	s.pruneLocked(now)
	rec := s.refreshes[hashToken(rt)]
	if rec == nil {
		return nil, invalidGrant(descInvalidRT)
	}
	f := rec.fam
	if f.clientID != clientID {
		return nil, invalidGrant(descClientMismatch)
	}
	if f.session.ended {
		return nil, invalidGrant(descSessionNotAct)
	}
	if f.revoked != "" {
		return nil, invalidGrant(descNoRequiredClent)
	}
	if end := f.session.end; !end.IsZero() && !now.Before(end) {
		s.c.SessionMaxEnded++
		s.log.Info("refresh refused: session maximum passed", "family", f.id, "client", f.clientID, "user", f.user)
		return nil, invalidGrant(descSessionNotAct)
	}
	if !now.Before(rec.expires) {
		return nil, invalidGrant(descNotActive)
	}
	if rec.used {
		s.c.RefreshReuse++
		s.revokeFamilyLocked(f, ReasonReuse)
		s.log.Warn("refresh token reuse detected: family revoked", "family", f.id, "client", f.clientID, "user", f.user)
		return nil, invalidGrant(descReuse)
	}
	rec.used = true
	out, err := s.issueLocked(f, iss, true, now)
	if err != nil {
		return nil, &grantError{status: 500, code: "server_error", desc: err.Error()}
	}
	s.c.Refreshes++
	return out, nil
}

// revokeFamilyLocked ends one family (all its tokens). Caller holds s.mu.
func (s *Server) revokeFamilyLocked(f *family, reason string) bool {
	if f.killed() {
		return false
	}
	f.revoked = reason
	s.c.FamiliesRevoked++
	s.c.FamiliesRevokedByReason[reason]++
	return true
}

// endSessionLocked logs a session out; it returns how many live families it ended.
func (s *Server) endSessionLocked(ss *session, now time.Time) int {
	if ss.ended {
		return 0
	}
	n := 0
	for _, f := range ss.families {
		if dead, _ := f.ended(now); !dead {
			n++
			s.c.FamiliesRevoked++
			s.c.FamiliesRevokedByReason[ReasonLogout]++
		}
	}
	ss.ended = true
	return n
}

// LogoutUser ends the user's own sessions, like the user logging out everywhere: every
// family minted by the user's password grant or FOLIO login, and the families exchanged
// from the user's tokens (RFC 8693), which live in the user's session; only with
// Config.ExchangeOwnSession do exchanged families survive. It returns the number of live
// families ended.
func (s *Server) LogoutUser(username string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	n := 0
	for _, ss := range s.sessions {
		if ss.user != "" && ss.user == username && ss.exchangedFrom == "" {
			n += s.endSessionLocked(ss, now)
		}
	}
	s.c.Logouts++
	s.log.Info("user logged out", "user", username, "families", n)
	return n
}

var errUnknownKid = errors.New("unknown kid")

// accessResult is the outcome of validating an access token.
type accessResult struct {
	claims *atClaims
	rec    *accessRec // nil when the token is valid but not in memory (e.g. KeyFile restart)
	reason string     // "" when valid, else Reason401*
}

// validateAccess checks an access token: signature against the current JWKS, iss (when
// iss is not empty), exp with leeway, then revocation. It takes s.mu for the lookups.
func (s *Server) validateAccess(tok, iss string, leeway time.Duration) accessResult {
	if tok == "" || strings.Count(tok, ".") != 2 {
		return accessResult{reason: Reason401Invalid}
	}
	now := s.clk.Now()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(leeway),
	}
	if iss != "" {
		opts = append(opts, jwt.WithIssuer(iss))
	}
	claims := &atClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range s.keys {
			if k.kid == kid {
				return &k.priv.PublicKey, nil
			}
		}
		return nil, errUnknownKid
	}, opts...)
	switch {
	case err == nil:
	case errors.Is(err, errUnknownKid):
		return accessResult{reason: Reason401UnknownKid}
	case errors.Is(err, jwt.ErrTokenExpired):
		return accessResult{reason: Reason401Expired}
	default:
		return accessResult{reason: Reason401Invalid}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.accesses[hashToken(tok)]
	if rec != nil && (rec.revoked || rec.fam.killed()) {
		return accessResult{claims: claims, rec: rec, reason: Reason401Revoked}
	}
	return accessResult{claims: claims, rec: rec}
}

// Active is in-process introspection: a refresh token that is unused, unexpired and whose
// family is alive, or an access token that validates (no leeway) and is not revoked.
func (s *Server) Active(token string) bool {
	s.mu.Lock()
	if rec := s.refreshes[hashToken(token)]; rec != nil {
		now := s.clk.Now()
		dead, _ := rec.fam.ended(now)
		ok := !rec.used && now.Before(rec.expires) && !dead
		s.mu.Unlock()
		return ok
	}
	s.mu.Unlock()
	return s.validateAccess(token, s.URL(), 0).reason == ""
}

// activeFamiliesLocked counts live families holding an unexpired token.
func (s *Server) activeFamiliesLocked(now time.Time) int64 {
	var n int64
	for _, f := range s.families {
		if dead, _ := f.ended(now); dead {
			continue
		}
		rtLive := f.current != nil && !f.current.used && now.Before(f.current.expires)
		if rtLive || now.Before(f.lastAT) {
			n++
		}
	}
	return n
}

// pruneLocked drops token records expired for longer than pruneGrace, and families and
// sessions left without any. At most once a minute of clock time.
func (s *Server) pruneLocked(now time.Time) {
	if now.Sub(s.lastPrune) < time.Minute {
		return
	}
	s.lastPrune = now
	cut := now.Add(-pruneGrace - s.leeway)
	for h, r := range s.refreshes {
		if r.expires.Before(cut) {
			delete(s.refreshes, h)
			r.fam.records--
		}
	}
	for h, a := range s.accesses {
		if a.expires.Before(cut) {
			delete(s.accesses, h)
			a.fam.records--
		}
	}
	for id, f := range s.families {
		if f.records <= 0 {
			delete(s.families, id)
			delete(f.session.families, id)
			if len(f.session.families) == 0 {
				delete(s.sessions, f.session.id)
			}
		}
	}
}
