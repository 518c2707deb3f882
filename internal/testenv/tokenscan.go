package testenv

import "strings"

// TokenScan looks for the bytes of issued tokens in what the operator wrote: its logs,
// events, status, a command's output. Token bytes must never appear there.
type TokenScan struct {
	needles []string
}

// minSignatureLen keeps short JWT signature parts (none of a real signing algorithm's)
// from matching by chance.
const minSignatureLen = 16

// NewTokenScan scans for each token whole and, for a JWT, for its signature part alone:
// a log line that cut the token at a dot would still leak the part that makes it valid.
func NewTokenScan(tokens []string) *TokenScan {
	s := &TokenScan{}
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		s.needles = append(s.needles, tok)
		if parts := strings.Split(tok, "."); len(parts) == 3 && len(parts[2]) >= minSignatureLen {
			s.needles = append(s.needles, parts[2])
		}
	}
	return s
}

// Empty says the scan has no token to look for: a scan that finds nothing then proves
// nothing, and callers should say so.
func (s *TokenScan) Empty() bool { return len(s.needles) == 0 }

// Found reports whether text holds any token's bytes.
func (s *TokenScan) Found(text string) bool {
	for _, n := range s.needles {
		if strings.Contains(text, n) {
			return true
		}
	}
	return false
}
