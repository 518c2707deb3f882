package tokenchain

import (
	"context"
	"errors"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// Store persists a record. Save fails when another writer changed the stored record
// since it was read (optimistic concurrency); on success the record is the stored one.
type Store interface {
	Save(ctx context.Context, r *Record) error
}

// Issuer is what a chain asks of an identity provider.
type Issuer interface {
	Mint(ctx context.Context, grant issuer.Grant) (*issuer.TokenSet, error)
	Refresh(ctx context.Context, refreshToken string) (*issuer.TokenSet, error)
}

// Kind says how an operation ended.
type Kind string

const (
	// Unchanged means nothing was needed.
	Unchanged Kind = "Unchanged"
	// Minted means the job's first pair is stored.
	Minted Kind = "Minted"
	// Rotated means a new access token is stored (by refresh, or by minting for a grant that
	// has no refresh token).
	Rotated Kind = "Rotated"
	// Reminted means a fresh pair replaced a chain that ended or could not go on.
	Reminted Kind = "Reminted"
	// Lost means the chain cannot go on and the grant cannot mint again; the job gets no
	// further tokens. The record keeps its marker so that nothing is ever replayed.
	Lost Kind = "Lost"
	// Failed means a request or a write failed; Err says which, and the chain is unchanged
	// (or marked, when the failure may have spent its token: the next pass recovers).
	Failed Kind = "Failed"
)

// Outcome is the result of one operation on a chain.
type Outcome struct {
	Kind Kind
	// Reason is the condition reason of a re-mint or a loss (an api Reason* constant).
	Reason string
	// Why says in words why the operation happened or ended so; never token bytes.
	Why string
	// Tokens is the new pair, for Minted, Rotated and Reminted.
	Tokens *issuer.TokenSet
	// Err is the failure, for Failed: an issuer error (see issuer.ClassOf) or a write's.
	Err error
}

// Chain is one job's chain as read at the start of a pass.
type Chain struct {
	Record *Record
	Store  Store
	Issuer Issuer
	// CanRemint says whether the grant can mint a new pair at any time.
	CanRemint bool
	// Grant reads the grant's input; only a mint calls it.
	Grant func(ctx context.Context) (issuer.Grant, error)
	// BeforeRequest, when set, is called before anything is written for a request to the
	// issuer (an issuer's request limit, for example); the release it returns is called
	// as soon as the issuer has answered, or when nothing was sent. An error ends the
	// operation as Failed with nothing written or sent.
	BeforeRequest func() (release func(), err error)
	Now           time.Time
}

func (c *Chain) acquire() (func(), error) {
	if c.BeforeRequest == nil {
		return func() {}, nil
	}
	return c.BeforeRequest()
}

// claim takes the issuer's slot and stores the in-flight marker of op on the chain's
// current generation, before a request that spends a token; on success the caller holds
// the slot. A failed write (a conflict: another writer moved the chain, and the next
// pass starts from it) gives the slot back.
func (c *Chain) claim(ctx context.Context, op string) (func(), error) {
	release, err := c.acquire()
	if err != nil {
		return nil, err
	}
	c.Record.InFlight = Marker(op, c.Record.Generation, c.Now)
	if err := c.Store.Save(ctx, c.Record); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// First mints the job's first pair on a record just created with Initial.
func (c *Chain) First(ctx context.Context) Outcome {
	return c.mint(ctx, jobtokenv1alpha1.ReasonMinted, "")
}

// Ensure brings a chain found at the start of a pass to a usable state: it recovers
// from a request whose outcome was never recorded, and mints again where a remintable
// chain has no access token. lostReported says the loss of this chain was already
// reported, so nothing is attempted.
func (c *Chain) Ensure(ctx context.Context, lostReported bool) Outcome {
	r := c.Record
	switch {
	case r.InFlight != "" && lostReported:
		return Outcome{Kind: Lost, Reason: jobtokenv1alpha1.ReasonOutcomeUnknown, Why: "the loss of the chain was reported earlier"}
	case r.InFlight != "":
		what := "a refresh"
		if r.InFlightOp() == OpRedeem {
			what = "the redemption of the grant input"
		}
		return c.Recover(ctx, jobtokenv1alpha1.ReasonOutcomeUnknown,
			what+" was interrupted and its outcome is unknown; the token it used is never replayed")
	case r.AccessToken == "" && c.CanRemint:
		return c.mint(ctx, jobtokenv1alpha1.ReasonMinted, "")
	case r.AccessToken == "" && r.Generation == 0 && !r.GrantRedeemed:
		// A one-shot input that an earlier pass did not spend (its redeem marker was
		// cleared on an answer that proves it): mark it again, then redeem it.
		release, err := c.claim(ctx, OpRedeem)
		if err != nil {
			return Outcome{Kind: Failed, Err: err}
		}
		return c.mintHeld(ctx, jobtokenv1alpha1.ReasonMinted, "", release)
	case r.AccessToken == "":
		return Outcome{Kind: Lost, Reason: jobtokenv1alpha1.ReasonDeadChain, Why: "the grant input was already redeemed and no token was kept"}
	}
	return Outcome{Kind: Unchanged}
}

// Refresh rotates the pair with the stored refresh token, crash-safely: the marker is
// stored before the request and the new pair after it. A chain without a refresh token
// rotates by minting where the grant can.
func (c *Chain) Refresh(ctx context.Context, why string) Outcome {
	r := c.Record
	if r.RefreshToken == "" {
		if c.CanRemint {
			return c.mint(ctx, jobtokenv1alpha1.ReasonRotated, why+"; the grant has no refresh token, so a new token is minted")
		}
		return Outcome{Kind: Lost, Reason: jobtokenv1alpha1.ReasonDeadChain, Why: "the issuer gave no refresh token and the grant cannot mint again"}
	}
	release, err := c.claim(ctx, OpRefresh)
	if err != nil {
		return Outcome{Kind: Failed, Err: err}
	}
	ts, err := c.Issuer.Refresh(ctx, r.RefreshToken)
	release()
	if err != nil {
		switch issuer.ClassOf(err) {
		case issuer.ClassOutcomeUnknown:
			return c.Recover(ctx, jobtokenv1alpha1.ReasonOutcomeUnknown, "the refresh request's outcome is unknown ("+err.Error()+")")
		case issuer.ClassDeadChain:
			return c.Recover(ctx, jobtokenv1alpha1.ReasonDeadChain, "the issuer ended the refresh chain ("+err.Error()+")")
		default:
			// The issuer answered without rotating: the refresh token is still good.
			r.InFlight = ""
			if serr := c.Store.Save(ctx, r); serr != nil {
				return Outcome{Kind: Failed, Err: errors.Join(err, serr)}
			}
			return Outcome{Kind: Failed, Err: err}
		}
	}
	r.setTokens(ts)
	r.Rotations++
	r.RotatedAt = c.Now
	if err := c.Store.Save(ctx, r); err != nil {
		return Outcome{Kind: Failed, Err: err}
	}
	return Outcome{Kind: Rotated, Why: why, Tokens: ts}
}

// Remint replaces a chain that is about to end (the session maximum) by a fresh pair.
func (c *Chain) Remint(ctx context.Context, reason, why string) Outcome {
	return c.mint(ctx, reason, why)
}

// Recover replaces a chain that cannot be refreshed: it mints again where the grant
// can, and otherwise reports the chain Lost, keeping the marker.
func (c *Chain) Recover(ctx context.Context, reason, why string) Outcome {
	if !c.CanRemint {
		return Outcome{Kind: Lost, Reason: reason, Why: why}
	}
	// Claim the recovery with a write, and keep the chain marked until a fresh pair is
	// stored: its refresh token may be spent, so a failed mint must not leave it for a
	// later refresh to present.
	release, err := c.claim(ctx, OpRefresh)
	if err != nil {
		return Outcome{Kind: Failed, Err: err}
	}
	return c.mintHeld(ctx, reason, why, release)
}

// mint obtains a fresh pair with the grant and stores it. reason is ReasonMinted for a
// first pair, ReasonRotated for a rotation by minting, or the reason of a re-mint.
func (c *Chain) mint(ctx context.Context, reason, why string) Outcome {
	release, err := c.acquire()
	if err != nil {
		return c.unspent(ctx, err)
	}
	return c.mintHeld(ctx, reason, why, release)
}

// mintHeld is mint with the issuer's slot already taken; it releases it.
func (c *Chain) mintHeld(ctx context.Context, reason, why string, release func()) Outcome {
	r := c.Record
	grant, err := c.Grant(ctx)
	if err != nil {
		release()
		return c.unspent(ctx, err)
	}
	ts, err := c.Issuer.Mint(ctx, grant)
	release()
	if err != nil {
		switch issuer.ClassOf(err) {
		case issuer.ClassOutcomeUnknown:
			return Outcome{Kind: Failed, Err: err}
		case issuer.ClassDeadChain:
			if !c.CanRemint && r.InFlightOp() == OpRedeem {
				// The one-shot input is dead: never present it again (an issuer may take a
				// second presentation of a used refresh token as theft of its family).
				r.InFlight, r.GrantRedeemed = "", true
				if serr := c.Store.Save(ctx, r); serr != nil {
					return Outcome{Kind: Failed, Err: errors.Join(err, serr)}
				}
				return Outcome{Kind: Lost, Reason: jobtokenv1alpha1.ReasonDeadChain, Why: "the issuer refused the grant input (" + err.Error() + ")"}
			}
		}
		// The issuer answered without acting: a one-shot input was not consumed.
		return c.unspent(ctx, err)
	}
	first := r.Generation == 0
	if reason != jobtokenv1alpha1.ReasonRotated && !first {
		// The replaced chain is revoked when the job ends, not now: revoking it may end the
		// access token the workers read until the new one reaches them, and on Keycloak
		// it detaches the client from all of the user's sessions, the new chain's included.
		r.replace()
	}
	r.setTokens(ts)
	if !c.CanRemint {
		r.GrantRedeemed = true
	}
	kind := Reminted
	switch {
	case reason == jobtokenv1alpha1.ReasonRotated:
		kind = Rotated
		r.Rotations++
		r.RotatedAt = c.Now
	case first:
		kind = Minted
	default:
		r.Remints++
	}
	if err := c.Store.Save(ctx, r); err != nil {
		return Outcome{Kind: Failed, Err: err}
	}
	return Outcome{Kind: kind, Reason: reason, Why: why, Tokens: ts}
}

// unspent ends a mint that failed before its input could be spent: a one-shot input's
// redeem marker is cleared so that the next pass may use it. A refresh marker stays:
// the chain's refresh token may be spent.
func (c *Chain) unspent(ctx context.Context, err error) Outcome {
	r := c.Record
	if r.InFlightOp() == OpRedeem {
		r.InFlight = ""
		if serr := c.Store.Save(ctx, r); serr != nil {
			return Outcome{Kind: Failed, Err: errors.Join(err, serr)}
		}
	}
	return Outcome{Kind: Failed, Err: err}
}
