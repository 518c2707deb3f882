package controllers

import (
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
		{"budget wins over the fraction", func() ScheduleInput { return base(60 * time.Second) },
			Schedule{RotateAt: at(30 * time.Second), Action: ActionRefresh}},
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
		{"truncated to whole seconds, never later", func() ScheduleInput {
			in := base(7 * time.Second)
			in.PropagationBudget = time.Second
			return in
		}, Schedule{RotateAt: at(4 * time.Second), Action: ActionRefresh}}, // 4.9s -> 4s
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
		}, Schedule{RotateAt: at(150 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}},
		{"chain ends within the budget of the planned refresh: remint", func() ScheduleInput {
			in := base(5 * time.Minute)
			in.ChainEndsAt, in.CanRemint = at(230*time.Second), true
			return in
		}, Schedule{RotateAt: at(200 * time.Second), Action: ActionRemint, ChainEndsBeforeNext: true}},
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
		}, Schedule{RotateAt: at(20 * time.Second), Action: ActionRefresh}}, // 70s - 49.99s = 20.0001s
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
			if got.RotateAt.Nanosecond() != 0 {
				t.Errorf("RotateAt %s is not truncated to seconds", got.RotateAt)
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

func TestParseFraction(t *testing.T) {
	for in, want := range map[string]float64{"0.7": 0.7, ".5": 0.5, "": 0.3, "1.0": 0.3, "x": 0.3, "-0.1": 0.3} {
		if got := parseFraction(in, 0.3); got != want {
			t.Errorf("parseFraction(%q) = %v, want %v", in, got, want)
		}
	}
}
