package devissuer

import "slices"

// IssuedTokens lists tokens the server minted, oldest first.
type IssuedTokens struct {
	// Access holds every access token, Refresh every refresh token (OAuth and FOLIO).
	Access  []string
	Refresh []string
}

// All returns the access and refresh tokens together.
func (t IssuedTokens) All() []string { return slices.Concat(t.Access, t.Refresh) }

// Issued returns every token minted so far, oldest first, when Config.RecordTokens is
// set (empty otherwise). It is for tests that check no output of a client holds token
// bytes; the server itself never logs them.
func (s *Server) Issued() IssuedTokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return IssuedTokens{Access: slices.Clone(s.issued.Access), Refresh: slices.Clone(s.issued.Refresh)}
}

// recordIssuedLocked appends tok to list when tokens are recorded. Caller holds s.mu.
func (s *Server) recordIssuedLocked(list *[]string, tok string) {
	if s.cfg.RecordTokens {
		*list = append(*list, tok)
	}
}
