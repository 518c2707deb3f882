package controllers

import (
	"hash/fnv"
	"math"
	"strconv"
	"time"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// schedule applies the pure rotation and retry schedules of schedule.go to one job.
func (r *ImportJobReconciler) schedule(s *scope) Schedule {
	return NextRotation(ScheduleInput{
		IssuedAt:          s.chain.IssuedAt,
		ExpiresAt:         s.chain.ExpiresAt,
		Fraction:          parseFraction(s.job.Spec.Rotation.Fraction, defaultFraction),
		Jitter:            parseFraction(s.job.Spec.Rotation.Jitter, defaultJitter),
		JitterSeed:        jitterSeed(string(s.job.UID), s.chain.Generation),
		PropagationBudget: propagationBudget(s.job),
		MinInterval:       r.MinRotationGap,
		ChainEndsAt:       s.chain.ChainEndsAt,
		CanRemint:         issuer.GrantType(s.job.Spec.Credentials.Grant).CanRemint(),
	})
}

// rotateNowWait is how long a requested rotation waits for the job's minimum interval
// since its last rotation (or its first mint).
func (r *ImportJobReconciler) rotateNowWait(s *scope) time.Duration {
	last := s.job.Status.LastRotationTime
	if last == nil {
		last = s.job.Status.StartTime
	}
	if last == nil || r.RotateNowMinInterval <= 0 {
		return 0
	}
	return last.Add(r.RotateNowMinInterval).Sub(s.now)
}

// retryWait is how long to wait before the next token request after failures (see
// NextRetry); the attempts and the last failure are kept in status so restarts honour it.
func (r *ImportJobReconciler) retryWait(s *scope) time.Duration {
	st := s.job.Status
	if st.FailedRotationAttempts == 0 || st.LastFailureTime == nil {
		return 0
	}
	return r.nextRetry(s, st.LastFailureTime.Time, 0).Sub(s.now)
}

// nextRetry is NextRetry for the job's current state.
func (r *ImportJobReconciler) nextRetry(s *scope, lastFailure time.Time, retryAfter time.Duration) time.Time {
	in := RetryInput{
		Attempts: s.job.Status.FailedRotationAttempts, LastFailure: lastFailure, MaxBackoff: r.MaxRetryBackoff,
		Seed: jitterSeed(string(s.job.UID)+"/retry", int64(s.job.Status.FailedRotationAttempts)), RetryAfter: retryAfter,
	}
	if s.chain != nil && s.chain.AccessToken != "" {
		in.IssuedAt, in.ExpiresAt = s.chain.IssuedAt, s.chain.ExpiresAt
		in.Deadline = Deadline(s.chain.ExpiresAt, propagationBudget(s.job))
	}
	return NextRetry(in)
}

// retryBackoff is 1s, 2s, 4s, ... capped at max.
func retryBackoff(attempts int32, maxBackoff time.Duration) time.Duration {
	if attempts <= 0 {
		return 0
	}
	d := time.Duration(float64(firstRetryBackoff) * math.Pow(2, float64(attempts-1)))
	if d > maxBackoff || d <= 0 {
		return maxBackoff
	}
	return d
}

func propagationBudget(job *jobtokenv1alpha1.ImportJob) time.Duration {
	if b := job.Spec.Rotation.PropagationBudget; b != nil && b.Duration > 0 {
		return b.Duration
	}
	return defaultPropagationBudget
}

func parseFraction(s string, def float64) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f >= 1 {
		return def
	}
	return f
}

// jitterSeed spreads jobs over the jitter window, stable for one job and token.
func jitterSeed(uid string, generation int64) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	_, _ = h.Write([]byte(strconv.FormatInt(generation, 10)))
	return float64(h.Sum64()%10000) / 10000
}
