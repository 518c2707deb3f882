// Package tokenchain keeps the token chain of one ImportJob: the record the operator
// stores (in a Secret of its own namespace, never mounted) and the operations that move
// the chain forward — mint, refresh and recover — each returning an Outcome.
//
// # The invariant
//
// A refresh token, or a single-use grant input (a subject token for TokenExchange, a
// handed-over refresh token), is presented to the issuer at most once; and a chain is
// never lost silently: it either holds a usable pair or its loss is reported (Lost).
//
// Identity providers rotate refresh tokens on every use and treat a replay as theft:
// Keycloak and Hydra revoke the whole token family. So a token must never be sent twice,
// even across a crash between the request and the write of its answer.
//
// # How it holds, crash point by crash point
//
// Every request that spends a token is bracketed by two writes of the record, each with
// optimistic concurrency (a write fails when another writer moved the record since it
// was read, so two managers can never both spend one token):
//
//  1. before the request, the record is written with an in-flight marker naming the
//     operation and the generation it spends ("refresh#7@<time>");
//  2. after the answer, the record is written with the new pair and no marker.
//
// Crash points:
//
//   - Before write 1: nothing was sent; the next pass finds the chain as it was.
//   - After write 1, before the request or during it, or after it but before write 2:
//     the next pass finds the marker. It cannot know whether the issuer consumed the
//     token, so the token is never presented again: Recover replaces the chain by a
//     fresh mint where the grant can mint at any time (ClientCredentials, Password), or
//     reports the chain Lost, keeping the marker so no later pass replays it either.
//   - After write 2: the new pair is stored; the next pass goes on from it.
//
// A one-shot grant input is marked the same way before its single use (op "redeem"),
// on the record created before the first mint. An issuer's answer that proves the
// token was not spent (a transient error such as 503, or a configuration error) clears
// the marker; one that may have spent it (a lost answer, a dead chain) does not.
//
// Recover first claims the chain with a write (the marker, with the current
// generation), so two managers that both find it cannot both mint.
//
// # Replaced chains
//
// A re-mint leaves the chain it replaces alive at the issuer: after a lost answer that
// chain was rotated into an answer nobody read, and a chain replaced before the session
// maximum is simply unused. Its refresh token is kept in the record (Replaced, the
// newest MaxReplaced) and revoked with the job's tokens when the job ends — not at once,
// because revoking it can end the access token the workers read until the new one
// reaches them, and on Keycloak it detaches the client from every session of the user,
// the new chain's included. Revocation is the issuer's to honour: RFC 7009 issuers that
// end a family on any of its tokens (Keycloak, the development issuer) end the rotated
// chain too; Hydra v2.3.0 ends an unused replaced chain but takes the revocation of a
// spent token without ending what it was rotated into (that chain lives to its refresh
// token's expiry); FOLIO's logout is never sent a spent token (Okapi would revoke every
// token of the user), so replaced chains there end at their own expiry.
package tokenchain

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobtoken/jobtoken/internal/issuer"
)

// Keys of the stored record. Every package that reads a stored chain uses these.
const (
	KeyRefreshToken  = "refresh_token"
	KeyAccessToken   = "access_token"
	KeyChainEndsAt   = "chain_ends_at"
	KeyGeneration    = "generation"
	KeyInFlight      = "in_flight"
	KeyGrantRedeemed = "grant_redeemed"
	KeyIssuedAt      = "issued_at"
	KeyExpiresAt     = "expires_at"
	KeyTokenType     = "token_type"
	KeyKeyID         = "kid"
	KeyRotations     = "rotations"
	KeyRemints       = "remints"
	KeyRotatedAt     = "rotated_at"
	KeyReplaced      = "replaced_refresh_tokens"
)

// MaxReplaced bounds the replaced refresh tokens a record keeps for revocation at the
// job's end; the oldest are dropped first (theirs are the chains most likely ended).
const MaxReplaced = 8

// Operations an in-flight marker names.
const (
	// OpRefresh spends the stored refresh token.
	OpRefresh = "refresh"
	// OpRedeem spends a single-use grant input.
	OpRedeem = "redeem"
)

const (
	timeFormat            = time.RFC3339Nano
	inFlightSeparator     = "@"
	inFlightGenerationSep = "#"
)

// Record is one job's stored chain.
type Record struct {
	RefreshToken string
	AccessToken  string
	// ChainEndsAt is when the refresh chain ends (refresh-token expiry or session
	// maximum, the earlier); zero when the issuer did not say.
	ChainEndsAt time.Time
	// Generation counts the pairs stored; 0 before the first.
	Generation int64
	// InFlight is set while a request that spends a token is under way:
	// "<op>#<generation>@<time>". Found set by a later pass, the request's outcome is
	// unknown and the token it used is never presented again.
	InFlight string
	// IssuedAt, ExpiresAt, TokenType and KeyID describe the current access token.
	IssuedAt  time.Time
	ExpiresAt time.Time
	TokenType string
	KeyID     string
	// GrantRedeemed is set once a one-shot grant input was used.
	GrantRedeemed bool
	// Rotations and Remints count the rotations and the fresh pairs minted after the
	// first; RotatedAt is the time of the last rotation. They live in the record (written
	// with each new pair anyway) so that the status can show them late without losing any.
	Rotations int64
	Remints   int64
	RotatedAt time.Time
	// Replaced holds the refresh tokens of chains a re-mint replaced, newest last, at
	// most MaxReplaced. After a lost answer such a chain may live on at the issuer (its
	// rotated token was in the answer nobody read); it is revoked with the job's tokens
	// when the job ends, not at once: revoking it may end the access token the workers
	// still read, and on some issuers every session of the user and client.
	Replaced []string
}

// Decode reads a record from a stored Secret's data; fields that do not parse are zero.
func Decode(data map[string][]byte) Record {
	r := Record{
		RefreshToken:  string(data[KeyRefreshToken]),
		AccessToken:   string(data[KeyAccessToken]),
		ChainEndsAt:   parseTime(data[KeyChainEndsAt]),
		IssuedAt:      parseTime(data[KeyIssuedAt]),
		ExpiresAt:     parseTime(data[KeyExpiresAt]),
		TokenType:     string(data[KeyTokenType]),
		KeyID:         string(data[KeyKeyID]),
		InFlight:      string(data[KeyInFlight]),
		GrantRedeemed: string(data[KeyGrantRedeemed]) == "true",
		RotatedAt:     parseTime(data[KeyRotatedAt]),
	}
	if raw := data[KeyReplaced]; len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.Replaced) // unreadable: nothing to revoke, never a failed pass
	}
	r.Generation, _ = strconv.ParseInt(string(data[KeyGeneration]), 10, 64)
	r.Rotations, _ = strconv.ParseInt(string(data[KeyRotations]), 10, 64)
	r.Remints, _ = strconv.ParseInt(string(data[KeyRemints]), 10, 64)
	return r
}

// Encode writes the record as Secret data.
func (r *Record) Encode() map[string][]byte {
	data := map[string][]byte{
		KeyRefreshToken: []byte(r.RefreshToken),
		KeyAccessToken:  []byte(r.AccessToken),
		KeyGeneration:   []byte(strconv.FormatInt(r.Generation, 10)),
		KeyInFlight:     []byte(r.InFlight),
	}
	putTime(data, KeyChainEndsAt, r.ChainEndsAt)
	putTime(data, KeyIssuedAt, r.IssuedAt)
	putTime(data, KeyExpiresAt, r.ExpiresAt)
	putTime(data, KeyRotatedAt, r.RotatedAt)
	putString(data, KeyTokenType, r.TokenType)
	putString(data, KeyKeyID, r.KeyID)
	if r.GrantRedeemed {
		data[KeyGrantRedeemed] = []byte("true")
	}
	if r.Rotations != 0 {
		data[KeyRotations] = []byte(strconv.FormatInt(r.Rotations, 10))
	}
	if r.Remints != 0 {
		data[KeyRemints] = []byte(strconv.FormatInt(r.Remints, 10))
	}
	if len(r.Replaced) > 0 {
		raw, _ := json.Marshal(r.Replaced) // a []string always marshals
		data[KeyReplaced] = raw
	}
	return data
}

// InFlightOp is the operation of the in-flight marker (OpRefresh or OpRedeem), "" when
// none is set.
func (r *Record) InFlightOp() string {
	op, _, _ := strings.Cut(r.InFlight, inFlightGenerationSep)
	return op
}

// Initial is the record stored before the first mint. A one-shot grant's input is
// marked before its single use, so that a crash in between is seen as an unknown
// outcome and the input is never presented again.
func Initial(oneShot bool, now time.Time) Record {
	if oneShot {
		return Record{InFlight: Marker(OpRedeem, 0, now)}
	}
	return Record{}
}

// Usable tells whether the record holds an access token and no request is in flight.
func (r *Record) Usable() bool { return r.AccessToken != "" && r.InFlight == "" }

// Marker is the in-flight marker of op spending generation at now.
func Marker(op string, generation int64, now time.Time) string {
	return fmt.Sprintf("%s%s%d%s%s", op, inFlightGenerationSep, generation, inFlightSeparator, now.UTC().Format(time.RFC3339))
}

// replace keeps the current refresh token for revocation at the job's end, before a
// re-mint drops it.
func (r *Record) replace() {
	if r.RefreshToken == "" || slices.Contains(r.Replaced, r.RefreshToken) {
		return
	}
	r.Replaced = append(r.Replaced, r.RefreshToken)
	if n := len(r.Replaced); n > MaxReplaced {
		r.Replaced = slices.Clone(r.Replaced[n-MaxReplaced:])
	}
}

// setTokens records a fresh pair and clears the in-flight marker.
func (r *Record) setTokens(ts *issuer.TokenSet) {
	r.AccessToken = ts.AccessToken
	r.RefreshToken = ts.RefreshToken
	r.IssuedAt = ts.IssuedAt
	r.ExpiresAt = ts.ExpiresAt
	r.TokenType = ts.TokenType
	r.KeyID = ts.KeyID
	r.ChainEndsAt = chainEnd(ts)
	r.Generation++
	r.InFlight = ""
}

// chainEnd is the earlier of the refresh-token expiry and the session maximum.
func chainEnd(ts *issuer.TokenSet) time.Time {
	end := ts.RefreshExpiresAt
	if !ts.SessionExpiresAt.IsZero() && (end.IsZero() || ts.SessionExpiresAt.Before(end)) {
		end = ts.SessionExpiresAt
	}
	return end
}

func parseTime(b []byte) time.Time {
	t, err := time.Parse(timeFormat, string(b))
	if err != nil {
		return time.Time{}
	}
	return t
}

func putTime(data map[string][]byte, key string, t time.Time) {
	if !t.IsZero() {
		data[key] = []byte(t.UTC().Format(timeFormat))
	}
}

func putString(data map[string][]byte, key, v string) {
	if v != "" {
		data[key] = []byte(v)
	}
}
