package devissuer

import (
	"maps"
	"net/http"
)

// Grant keys of Counters.TokenRequests.
const (
	GrantKeyPassword          = "password"
	GrantKeyClientCredentials = "client_credentials"
	GrantKeyRefreshToken      = "refresh_token"
	GrantKeyTokenExchange     = "token_exchange"
	GrantKeyFolioLogin        = "folio_login"
	GrantKeyFolioRefresh      = "folio_refresh"
	GrantKeyOther             = "other" // unsupported or missing grant_type
)

// Result keys of Counters.TokenRequests besides OAuth error codes ("invalid_grant",
// "invalid_client", "invalid_request", "unsupported_grant_type") and FOLIO statuses
// ("folio_400", "folio_422").
const (
	ResultOK = "ok"
	// ResultDropped: the refresh was committed (the token rotated) but the connection was
	// closed without an answer (Faults.CommitThenDrop).
	ResultDropped    = "dropped"
	ResultErrorRate  = "fault_error_rate" // answered 503 by Faults.ErrorRate
	ResultDown       = "fault_down"       // answered 503 by Faults.Down
	ResultBadRequest = "bad_request"
)

// Family end reasons, keys of Counters.FamiliesRevokedByReason.
const (
	ReasonReuse   = "reuse"   // a used refresh token was replayed
	ReasonRevoked = "revoked" // RFC 7009 revocation of its refresh token
	ReasonLogout  = "logout"  // the session was logged out (user or refresh-token logout)
)

// Resource 401 reasons, keys of Counters.Resource401.
const (
	Reason401Invalid    = "invalid"
	Reason401UnknownKid = "unknown_kid"
	Reason401Expired    = "expired"
	Reason401Revoked    = "revoked"
)

// Fault kinds, keys of Counters.FaultsInjected.
const (
	FaultLatency        = "latency"
	FaultErrorRate      = "error_rate"
	FaultCommitThenDrop = "commit_then_drop"
	FaultDown           = "down"
)

// Counters is a snapshot of what the server saw. Maps are never nil in a snapshot.
type Counters struct {
	// TokenRequests counts token-endpoint requests (OAuth /token and the FOLIO login and
	// refresh) by grant key (GrantKey*) and result (ResultOK, an OAuth error code, ...).
	TokenRequests map[string]map[string]int64 `json:"tokenRequests"`
	// AccessTokensIssued and RefreshTokensIssued count tokens minted, by any path.
	AccessTokensIssued  int64 `json:"accessTokensIssued"`
	RefreshTokensIssued int64 `json:"refreshTokensIssued"`
	// Refreshes counts refresh tokens rotated (OAuth and FOLIO), including dropped answers.
	Refreshes int64 `json:"refreshes"`
	// RefreshReuse counts replays of an already-used refresh token (each revoked a family).
	RefreshReuse int64 `json:"refreshReuse"`
	// FamiliesRevoked counts families ended by reuse, revocation or logout;
	// FamiliesRevokedByReason splits it (ReasonReuse, ReasonRevoked, ReasonLogout).
	FamiliesRevoked         int64            `json:"familiesRevoked"`
	FamiliesRevokedByReason map[string]int64 `json:"familiesRevokedByReason"`
	// SessionMaxEnded counts refreshes refused because the session maximum had passed.
	SessionMaxEnded int64 `json:"sessionMaxEnded"`
	// Revocations counts /revoke requests answered 200 (known or unknown token).
	Revocations int64 `json:"revocations"`
	// Introspections counts /introspect requests answered 200.
	Introspections int64 `json:"introspections"`
	// Logouts counts logout operations: /logout, /admin/logout, LogoutUser, /authn/logout.
	Logouts int64 `json:"logouts"`
	// ResourceAccepted counts 200s at /api/records, also by subject and by client (azp).
	ResourceAccepted          int64            `json:"resourceAccepted"`
	ResourceAcceptedBySubject map[string]int64 `json:"resourceAcceptedBySubject"`
	ResourceAcceptedByClient  map[string]int64 `json:"resourceAcceptedByClient"`
	// Resource401 counts 401s at /api/records by reason (Reason401*); Resource401Total sums.
	Resource401      map[string]int64 `json:"resource401"`
	Resource401Total int64            `json:"resource401Total"`
	// KeyRotations counts RotateSigningKey calls.
	KeyRotations int64 `json:"keyRotations"`
	// FaultsInjected counts injected faults by kind (Fault*).
	FaultsInjected map[string]int64 `json:"faultsInjected"`
	// ActiveFamilies is computed at snapshot time: families not revoked, logged out or past
	// their session maximum that still hold an unexpired refresh or access token.
	ActiveFamilies int64 `json:"activeFamilies"`
}

func newCounters() Counters {
	return Counters{
		TokenRequests:             map[string]map[string]int64{},
		FamiliesRevokedByReason:   map[string]int64{},
		ResourceAcceptedBySubject: map[string]int64{},
		ResourceAcceptedByClient:  map[string]int64{},
		Resource401:               map[string]int64{},
		FaultsInjected:            map[string]int64{},
	}
}

// Counters returns a snapshot.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	c.TokenRequests = make(map[string]map[string]int64, len(s.c.TokenRequests))
	for g, m := range s.c.TokenRequests {
		c.TokenRequests[g] = maps.Clone(m)
	}
	c.FamiliesRevokedByReason = maps.Clone(s.c.FamiliesRevokedByReason)
	c.ResourceAcceptedBySubject = maps.Clone(s.c.ResourceAcceptedBySubject)
	c.ResourceAcceptedByClient = maps.Clone(s.c.ResourceAcceptedByClient)
	c.Resource401 = maps.Clone(s.c.Resource401)
	c.FaultsInjected = maps.Clone(s.c.FaultsInjected)
	c.ActiveFamilies = s.activeFamiliesLocked(s.clk.Now())
	return c
}

// countTokenLocked records one token-endpoint request outcome. Caller holds s.mu.
func (s *Server) countTokenLocked(grant, result string) {
	m := s.c.TokenRequests[grant]
	if m == nil {
		m = map[string]int64{}
		s.c.TokenRequests[grant] = m
	}
	m[result]++
}

func (s *Server) countToken(grant, result string) {
	s.mu.Lock()
	s.countTokenLocked(grant, result)
	s.mu.Unlock()
}

func (s *Server) countFault(kind string) {
	s.mu.Lock()
	s.c.FaultsInjected[kind]++
	s.mu.Unlock()
}

func (s *Server) handleAdminCounters(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.Counters())
}
