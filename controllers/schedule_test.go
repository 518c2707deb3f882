package controllers

import (
	"strconv"
	"testing"
	"time"
)

func TestNextRotation(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	base := func(ttl time.Duration) ScheduleInput {
		return ScheduleInput{
			IssuedAt: t0, ExpiresAt: t0.Add(ttl),
			Fraction: 0.7, PropagationBudget: 30 * time.Second, MinInterval: time.Second,
		}
	}
	cases := []struct {
		name string
		in   func() ScheduleInput
		want Schedule
	}{
		{"fraction of a 5 minute token", func() ScheduleInput { return base(5 * time.Minute) },
			Schedule{RotateAt: at(210 * time.Second), Action: ActionRefresh}},
		{"budget wins over the fraction, less the lead (5% of the lifetime)", func() ScheduleInput { return base(60 * time.Second) },
			Schedule{RotateAt: at(27 * time.Second), Action: ActionRefresh}},
		{"budget decides and the jitter is kept", func() ScheduleInput {
			in := base(60 * time.Second)
			in.Jitter, in.JitterSeed = 0.1, 0.5
			return in
		}, Schedule{RotateAt: at(24 * time.Second), Action: ActionRefresh}},
		{"the lead is at least 1s", func() ScheduleInput {
			in := base(10 * time.Second)
			in.PropagationBudget = 3 * time.Second
			return in
		}, Schedule{RotateAt: at(6 * time.Second), Action: ActionRefresh}},
		{"the lead is at most 5s", func() ScheduleInput {
			in := base(10 * time.Minute)
			in.PropagationBudget = 9 * time.Minute
			return in
		}, Schedule{RotateAt: at(55 * time.Second), Action: ActionRefresh}},
		{"jitter moves earlier by seed x jitter x lifetime", func() ScheduleInput {
			in := base(10 * time.Minute)
			in.Jitter, in.JitterSeed = 0.1, 0.5
			return in
		}, Schedule{RotateAt: at(390 * time.Second), Action: ActionRefresh}},
		{"seed of 0 means no jitter", func() ScheduleInput {
			in := base(10 * time.Minute)
			in.Jitter = 0.1
			return in
		}, Schedule{RotateAt: at(420 * time.Second), Action: ActionRefresh}},
		{"the deadline is against the expiry workers read, in whole seconds", func() ScheduleInput {
			in := base(60*time.Second + 800*time.Millisecond)
			return in
		}, Schedule{RotateAt: at(26960 * time.Millisecond), Action: ActionRefresh}}, // 60s - 30s - 3.04s
		{"tiny TTL: as early as the minimum interval, budget unmet", func() ScheduleInput { return base(2 * time.Second) },
			Schedule{RotateAt: at(time.Second), Action: ActionRefresh, BudgetUnmet: true}},
		{"TTL equal to the budget: budget unmet", func() ScheduleInput { return base(30 * time.Second) },
			Schedule{RotateAt: at(time.Second), Action: ActionRefresh, BudgetUnmet: true}},
		{"already expired token: rotate at the earliest", func() ScheduleInput {
			in := base(0)
			return in
		}, Schedule{RotateAt: at(time.Second), Action: ActionRefresh, BudgetUnmet: true}},
		{"chain far away: refresh", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(time.Hour), true
			return in
		}, Schedule{RotateAt: at(210 * time.Second), Action: ActionRefresh}},
		{"chain ends before the planned refresh: remint before the wall", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(3*time.Minute), true
			return in
		}, Schedule{RotateAt: at(145 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}}, // 180s - 30s budget - 5s lead
		{"chain ends within the budget of the planned refresh: remint", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(230*time.Second), true
			return in
		}, Schedule{RotateAt: at(195 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}},
		{"re-mints before the wall are spread by the jitter", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(3*time.Minute), true
			in.Jitter, in.JitterSeed = 0.1, 0.5
			return in
		}, Schedule{RotateAt: at(130 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}}, // 180s - 30s - 5s - 15s
		{"a chain end with a fraction of a second counts from the whole second", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(180*time.Second+900*time.Millisecond), true
			return in
		}, Schedule{RotateAt: at(145 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}},
		{"chain ends soon, grant cannot remint: refresh while it lasts and warn", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt = at(3 * time.Minute)
			return in
		}, Schedule{RotateAt: at(210 * time.Second), Action: ActionRefresh, ChainEndsBeforeNext: true}},
		{"chain ends after the next refresh but before the one after: warn only", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt = at(8 * time.Minute)
			return in
		}, Schedule{RotateAt: at(210 * time.Second), Action: ActionRefresh, ChainEndsBeforeNext: true}},
		{"chain already over: remint at the earliest", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(-time.Minute), true
			return in
		}, Schedule{RotateAt: at(time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}},
		{"seed out of range is clamped", func() ScheduleInput {
			in := base(100 * time.Second)
			in.Jitter, in.JitterSeed, in.PropagationBudget = 0.5, 7, 0
			return in
		}, Schedule{RotateAt: at(20*time.Second + 50*time.Microsecond), Action: ActionRefresh}}, // 70s - 49.99995s
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in()
			got := NextRotation(in)
			if got != tc.want {
				t.Errorf("NextRotation() = %+v, want %+v", got, tc.want)
			}
			if again := NextRotation(in); again != got {
				t.Errorf("not pure: %+v then %+v", got, again)
			}
			if dl := Deadline(in.ExpiresAt, in.PropagationBudget); !got.BudgetUnmet && got.RotateAt.After(dl) {
				t.Errorf("RotateAt %s is after the deadline %s", got.RotateAt, dl)
			}
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	cases := []struct {
		attempts int32
		max      time.Duration
		want     time.Duration
	}{
		{0, time.Minute, 0},
		{1, time.Minute, time.Second},
		{2, time.Minute, 2 * time.Second},
		{4, time.Minute, 8 * time.Second},
		{7, time.Minute, time.Minute},           // 64s capped
		{200, 5 * time.Minute, 5 * time.Minute}, // no overflow
	}
	for _, tc := range cases {
		if got := retryBackoff(tc.attempts, tc.max); got != tc.want {
			t.Errorf("retryBackoff(%d, %s) = %s, want %s", tc.attempts, tc.max, got, tc.want)
		}
	}
}

func TestNextRetry(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	in := func(attempts int32, seed float64) RetryInput {
		return RetryInput{Attempts: attempts, LastFailure: t0, MaxBackoff: time.Minute, Seed: seed}
	}
	with := func(r RetryInput, f func(*RetryInput)) RetryInput { f(&r); return r }
	cases := []struct {
		name string
		in   RetryInput
		want time.Time
	}{
		{"no failure", in(0, 0.5), t0},
		{"first retry, lowest seed: half of 1s", in(1, 0), at(500 * time.Millisecond)},
		{"fourth retry, seed 0.5: three quarters of 8s", in(4, 0.5), at(6 * time.Second)},
		{"capped: half of the one-minute cap at the lowest seed", in(9, 0), at(30 * time.Second)},
		{"a valid token bounds the wait by its deadline", with(in(4, 0.5), func(r *RetryInput) {
			r.Deadline, r.ExpiresAt = at(3*time.Second), at(5*time.Second)
		}), at(3 * time.Second)},
		{"deadline passed: bounded by the expiry", with(in(4, 0.5), func(r *RetryInput) {
			r.Deadline, r.ExpiresAt = at(-time.Second), at(2*time.Second)
		}), at(2 * time.Second)},
		{"bounded, but never sooner than 1s after the failure", with(in(4, 0.5), func(r *RetryInput) {
			r.Deadline, r.ExpiresAt = at(-time.Second), at(300*time.Millisecond)
		}), at(time.Second)},
		{"expired token: plain backoff", with(in(4, 0.5), func(r *RetryInput) {
			r.Deadline, r.ExpiresAt = at(-3*time.Second), at(-time.Second)
		}), at(6 * time.Second)},
		{"expired token: the cap is its lifetime", with(in(9, 0), func(r *RetryInput) {
			r.IssuedAt, r.Deadline, r.ExpiresAt = at(-7*time.Second), at(-3*time.Second), at(-time.Second)
		}), at(3 * time.Second)},
		{"the issuer's Retry-After wins over the bound", with(in(4, 0.5), func(r *RetryInput) {
			r.Deadline, r.ExpiresAt, r.RetryAfter = at(3*time.Second), at(5*time.Second), 20*time.Second
		}), at(20 * time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := NextRetry(tc.in); !got.Equal(tc.want) {
				t.Errorf("NextRetry() = %s, want %s", got.Sub(t0), tc.want.Sub(t0))
			}
		})
	}
	// Jobs that failed together come back over the upper half of the backoff.
	seen := map[time.Duration]bool{}
	for i := range 100 {
		d := NextRetry(in(5, jitterSeed(strconv.Itoa(i), 5))).Sub(t0)
		if d < 8*time.Second || d > 16*time.Second {
			t.Fatalf("retry after %s, want within [8s, 16s]", d)
		}
		seen[d.Truncate(time.Second)] = true
	}
	if len(seen) < 6 {
		t.Errorf("100 jobs retried within only %d distinct seconds of [8s, 16s]", len(seen))
	}
}

func TestParseFraction(t *testing.T) {
	for in, want := range map[string]float64{"0.7": 0.7, ".5": 0.5, "": 0.3, "1.0": 0.3, "x": 0.3, "-0.1": 0.3} {
		if got := parseFraction(in, 0.3); got != want {
			t.Errorf("parseFraction(%q) = %v, want %v", in, got, want)
		}
	}
}
