package controllers

import (
	"time"
)

// RotationAction is what the next scheduled rotation does.
type RotationAction string

const (
	// ActionRefresh redeems the refresh token for a new pair.
	ActionRefresh RotationAction = "Refresh"
	// ActionRemint mints a fresh pair with the grant, because the refresh chain ends
	// (session maximum or refresh-token expiry) before the next refresh could complete.
	ActionRemint RotationAction = "Remint"
)

// ScheduleInput is everything the rotation time depends on. All times are on the
// operator's clock.
type ScheduleInput struct {
	// IssuedAt and ExpiresAt bound the current access token's life.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Fraction of the lifetime after which to rotate, in (0, 1).
	Fraction float64
	// Jitter is the largest fraction of the lifetime by which a rotation is moved earlier.
	Jitter float64
	// JitterSeed picks the job's point within the jitter, in [0, 1); stable for a token so
	// that a restart computes the same time.
	JitterSeed float64
	// PropagationBudget is how long the new token may take to reach the workers: the new
	// token must be written at least this long before the old one expires.
	PropagationBudget time.Duration
	// MinInterval is the shortest time between two rotations of one job (storm guard).
	MinInterval time.Duration
	// ChainEndsAt is when the refresh chain ends (refresh-token expiry or session
	// maximum); zero when the issuer does not say.
	ChainEndsAt time.Time
	// CanRemint tells whether the grant can mint a fresh pair.
	CanRemint bool
}

// Schedule is the decision for the current token.
type Schedule struct {
	// RotateAt is when to rotate.
	RotateAt time.Time
	// Action is what to do then.
	Action RotationAction
	// BudgetUnmet is true when the token lives too short for the propagation budget:
	// RotateAt is then as early as MinInterval allows, and workers may briefly read an
	// expired token.
	BudgetUnmet bool
	// ChainEndsBeforeNext is true when the refresh chain ends before the token that the
	// next refresh would return could be rotated in turn, so a grant that cannot re-mint
	// will lose its credentials soon: the caller warns with SessionExpiring.
	ChainEndsBeforeNext bool
}

// Rotation lead: when the propagation budget, not the fraction, decides the rotation
// time, the rotation starts this much before the deadline so that the operator's own
// work (the issuer's answer, the stored chain, the worker Secret, behind the other jobs
// due at the same time) fits before it. It is a share of the lifetime, at least
// minRotationLead (a loaded API server and issuer take that long) and at most
// maxRotationLead.
const (
	rotationLeadFraction = 0.05
	minRotationLead      = time.Second
	maxRotationLead      = 5 * time.Second
)

// Deadline is when the workers must be able to read the next token: the expiry they
// are told (whole seconds, as written to the worker Secret) minus the propagation budget.
func Deadline(expiresAt time.Time, budget time.Duration) time.Time {
	return expiresAt.Truncate(time.Second).Add(-budget)
}

// NextRotation computes when to rotate the current token and how. It is a pure
// function of its input: the same input always gives the same schedule.
//
// The rotation aims at the fraction of the lifetime, but no later than the deadline
// minus the rotation lead; the jitter then moves it earlier, after that clamp, so that
// jobs whose budget decides are spread as much as the others (rotating all of them at
// exactly deadline minus lead would make them rotate in lockstep).
func NextRotation(in ScheduleInput) Schedule {
	lifetime := max(in.ExpiresAt.Sub(in.IssuedAt), 0)
	deadline := Deadline(in.ExpiresAt, in.PropagationBudget)
	target := in.IssuedAt.Add(time.Duration(float64(lifetime) * in.Fraction))
	lead := min(max(time.Duration(float64(lifetime)*rotationLeadFraction), minRotationLead), maxRotationLead)
	if latest := deadline.Add(-lead); latest.Before(target) {
		target = latest
	}
	jitter := time.Duration(float64(lifetime) * in.Jitter * clamp01(in.JitterSeed))
	rotateAt := target.Add(-jitter)
	out := Schedule{Action: ActionRefresh}

	if !in.ChainEndsAt.IsZero() {
		// A refresh at rotateAt must finish, and its token reach the workers, before the
		// chain ends; otherwise mint a fresh pair before the wall instead. The chain's end
		// is known in whole seconds from an answer that took time to arrive, so it gets
		// the same whole-second deadline and lead as the token's expiry.
		if chainDeadline := Deadline(in.ChainEndsAt, in.PropagationBudget).Add(-lead); !rotateAt.Before(chainDeadline) {
			if in.CanRemint {
				// Jobs whose sessions started together (a batch submitted at once) reach
				// their maximum together: the jitter spreads their re-mints too.
				out.Action = ActionRemint
				rotateAt = chainDeadline.Add(-jitter)
			}
		}
		// After the next refresh, the following token would need the chain to last one
		// more lifetime (plus the budget) from rotateAt.
		if in.ChainEndsAt.Before(rotateAt.Add(lifetime + in.PropagationBudget)) {
			out.ChainEndsBeforeNext = true
		}
	}

	earliest := in.IssuedAt.Add(in.MinInterval)
	if rotateAt.Before(earliest) {
		rotateAt = earliest
	}
	if in.ExpiresAt.Add(-in.PropagationBudget).Before(earliest) {
		out.BudgetUnmet = true
	}
	out.RotateAt = rotateAt
	return out
}

// RetryInput is everything the wait before the next token request depends on, after
// failed ones.
type RetryInput struct {
	// Attempts failed in a row, and when the last one failed.
	Attempts    int32
	LastFailure time.Time
	// MaxBackoff caps the exponential backoff.
	MaxBackoff time.Duration
	// Seed picks the job's point within the backoff's jitter, in [0, 1).
	Seed float64
	// IssuedAt, Deadline and ExpiresAt of the current token (zero without a token).
	IssuedAt, Deadline, ExpiresAt time.Time
	// RetryAfter is what the issuer asked for (zero when it did not say).
	RetryAfter time.Duration
}

// NextRetry is when to send the next token request after failures: capped exponential
// backoff (1s, 2s, 4s, ...) with equal jitter (each wait is drawn from its upper half,
// so that jobs that failed together do not all come back together when the issuer
// returns). While the current token is still valid, the wait ends no later than its
// deadline (or, once that has passed, its expiry): a backoff must not be what makes a
// rotation late. Once the token has expired, the cap is the token's lifetime (when
// shorter than MaxBackoff): the workers have nothing valid to read, so a job retries at
// most about as often as it would rotate, and holds a fresh token within one lifetime
// of the issuer's return. The issuer's Retry-After is honoured over all of these. It is
// a pure function.
func NextRetry(in RetryInput) time.Time {
	if in.Attempts <= 0 {
		return in.LastFailure
	}
	maxBackoff := in.MaxBackoff
	if lifetime := in.ExpiresAt.Sub(in.IssuedAt); !in.ExpiresAt.IsZero() && !in.LastFailure.Before(in.ExpiresAt) && lifetime > 0 {
		maxBackoff = min(maxBackoff, max(lifetime, firstRetryBackoff))
	}
	backoff := retryBackoff(in.Attempts, maxBackoff)
	backoff -= time.Duration(float64(backoff/2) * (1 - clamp01(in.Seed)))
	next := in.LastFailure.Add(backoff)
	if !in.ExpiresAt.IsZero() && in.LastFailure.Before(in.ExpiresAt) {
		bound := in.Deadline
		if !in.LastFailure.Before(bound) {
			bound = in.ExpiresAt
		}
		if earliest := in.LastFailure.Add(firstRetryBackoff); bound.Before(earliest) {
			bound = earliest
		}
		if bound.Before(next) {
			next = bound
		}
	}
	if ra := in.LastFailure.Add(in.RetryAfter); ra.After(next) {
		next = ra
	}
	return next
}

func clamp01(f float64) float64 {
	switch {
	case f < 0:
		return 0
	case f >= 1:
		return 0.999999
	default:
		return f
	}
}
