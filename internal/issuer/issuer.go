// Package issuer talks to identity providers on behalf of the controller. Each dialect
// (OAuth2/OIDC, FOLIO) lives in one file behind the narrow Client interface; callers
// branch on the error classes defined in errors.go and never see wire details.
package issuer

import (
	"context"
	"fmt"
	"time"
)

// GrantType names how a job's token pair is minted.
type GrantType string

const (
	// GrantClientCredentials mints with the client's own credentials (RFC 6749 §4.4).
	GrantClientCredentials GrantType = "ClientCredentials"
	// GrantPassword mints with a user's or system user's name and password (RFC 6749 §4.3).
	GrantPassword GrantType = "Password"
	// GrantTokenExchange exchanges the submitter's token once, at start (RFC 8693).
	GrantTokenExchange GrantType = "TokenExchange"
	// GrantRefreshToken redeems a handed-over (offline) refresh token once, at start.
	GrantRefreshToken GrantType = "RefreshToken"
)

// CanRemint reports whether the grant can mint a fresh pair at any time, without input
// that was consumed at start. Only such grants survive a dead chain or a session maximum.
func (g GrantType) CanRemint() bool {
	return g == GrantClientCredentials || g == GrantPassword
}

// Grant is the input for Mint. Secret fields are never printed (see String).
type Grant struct {
	Type GrantType
	// Username and Password, for GrantPassword.
	Username string
	Password string
	// SubjectToken and its type, for GrantTokenExchange. RequestedTokenType is optional.
	SubjectToken       string
	SubjectTokenType   string
	RequestedTokenType string
	// RefreshToken, for GrantRefreshToken.
	RefreshToken string
	// Scopes and Audience requested; empty means the issuer's defaults.
	Scopes   []string
	Audience []string
}

// String describes the grant without any secret.
func (g Grant) String() string {
	return fmt.Sprintf("grant{type=%s scopes=%v audience=%v}", g.Type, g.Scopes, g.Audience)
}

// GoString keeps %#v from printing secrets.
func (g Grant) GoString() string { return g.String() }

// TokenSet is what an issuer returned, with every time on the local clock.
type TokenSet struct {
	AccessToken  string
	RefreshToken string
	// TokenType is the scheme workers put in the Authorization header ("Bearer").
	TokenType string
	// IssuedAt is the local time the response was received.
	IssuedAt time.Time
	// ExpiresAt is when the access token stops working, measured on the local clock:
	// receipt time plus expires_in, else plus the JWT's exp-iat, else plus a default.
	ExpiresAt time.Time
	// RefreshExpiresAt is when the refresh token stops working (Keycloak
	// refresh_expires_in, FOLIO refreshTokenExpiration); zero when unknown.
	RefreshExpiresAt time.Time
	// SessionExpiresAt is the hard end of the refresh chain (session maximum) where the
	// issuer reports it; zero when unknown.
	SessionExpiresAt time.Time
	// KeyID is the JWS "kid" of the access token when it is a JWT; empty otherwise.
	KeyID string
}

// String describes the set without any token bytes.
func (t TokenSet) String() string {
	return fmt.Sprintf("tokens{type=%s access=%s refresh=%s issued=%s expires=%s kid=%q}",
		t.TokenType, presence(t.AccessToken), presence(t.RefreshToken),
		t.IssuedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), t.KeyID)
}

// GoString keeps %#v from printing token bytes.
func (t TokenSet) GoString() string { return t.String() }

func presence(s string) string {
	if s == "" {
		return "absent"
	}
	return "present"
}

// DefaultMaxTokenBytes is the largest access or refresh token accepted by default: a
// few times what Keycloak issues with many roles, small enough that a thousand jobs'
// tokens stay a few MiB in the manager and the Secrets.
const DefaultMaxTokenBytes = 8 << 10

// checkTokenSizes refuses a token set whose access or refresh token is longer than max
// (DefaultMaxTokenBytes when max is 0). The message gives sizes, never bytes.
func checkTokenSizes(ts *TokenSet, max int) error {
	if max <= 0 {
		max = DefaultMaxTokenBytes
	}
	for _, tk := range []struct{ name, v string }{{"access token", ts.AccessToken}, {"refresh token", ts.RefreshToken}} {
		if len(tk.v) > max {
			return fmt.Errorf("the %s is %d bytes, more than the %d allowed (--max-token-bytes)", tk.name, len(tk.v), max)
		}
	}
	return nil
}

// Revocation names the tokens to revoke at the end of a job. Empty fields are skipped.
type Revocation struct {
	AccessToken  string
	RefreshToken string
	// Replaced are refresh tokens of earlier chains of the job that a re-mint replaced;
	// after a lost answer such a chain may live on at the issuer. A dialect revokes them
	// where revoking a token ends its own chain (RFC 7009 issuers), and leaves them to
	// expire where presenting a spent token is punished beyond its chain.
	Replaced []string
}

// String describes the request without any token bytes.
func (r Revocation) String() string {
	return fmt.Sprintf("revocation{access=%s refresh=%s replaced=%d}", presence(r.AccessToken), presence(r.RefreshToken), len(r.Replaced))
}

// Client is the narrow interface the controller uses for one issuer.
// Every error it returns is an *Error (see errors.go) and carries no token bytes.
type Client interface {
	// Mint obtains a fresh pair with the grant.
	Mint(ctx context.Context, grant Grant) (*TokenSet, error)
	// Refresh redeems a refresh token once. The returned set carries the rotated
	// refresh token, or the old one when the issuer did not rotate.
	Refresh(ctx context.Context, refreshToken string) (*TokenSet, error)
	// Revoke revokes the given tokens; a token the issuer does not know is success.
	Revoke(ctx context.Context, tokens Revocation) error
}

// KeyChecker is implemented by dialects whose access tokens are JWTs signed with keys
// published in a JWKS. The controller rotates a token whose kid is no longer published.
type KeyChecker interface {
	// KeyIDs returns the key ids the issuer currently publishes.
	KeyIDs(ctx context.Context) ([]string, error)
}
