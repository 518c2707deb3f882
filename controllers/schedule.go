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
	// RotateAt is when to rotate, truncated to whole seconds (never later than computed).
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

// NextRotation computes when to rotate the current token and how. It is a pure
// function of its input: the same input always gives the same schedule.
func NextRotation(in ScheduleInput) Schedule {
	lifetime := in.ExpiresAt.Sub(in.IssuedAt)
	if lifetime < 0 {
		lifetime = 0
	}
	jitter := time.Duration(float64(lifetime) * in.Jitter * clamp01(in.JitterSeed))
	rotateAt := in.IssuedAt.Add(time.Duration(float64(lifetime)*in.Fraction) - jitter)
	if latest := in.ExpiresAt.Add(-in.PropagationBudget); latest.Before(rotateAt) {
		rotateAt = latest
	}
	out := Schedule{Action: ActionRefresh}

	if !in.ChainEndsAt.IsZero() {
		// A refresh at rotateAt must finish, and its token reach the workers, before the
		// chain ends; otherwise mint a fresh pair before the wall instead.
		if deadline := in.ChainEndsAt.Add(-in.PropagationBudget); !rotateAt.Before(deadline) {
			if in.CanRemint {
				out.Action = ActionRemint
				rotateAt = deadline
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
	out.RotateAt = rotateAt.Truncate(time.Second)
	return out
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
