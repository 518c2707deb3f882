package controllers

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
)

// Fair use of shared issuers: each issuer has a gate with a cap on concurrent token
// requests and a token-bucket rate (golang.org/x/time/rate). A job that finds its
// issuer's gate closed waits at most issuerSlotWait for a slot, then is requeued
// (RequeueAfter) instead of holding a worker, so one issuer
// that hangs, or one tenant's hundreds of jobs, cannot take every worker from the jobs
// of other issuers, and a rotate-now loop cannot hammer the identity provider.

const (
	// DefaultIssuerConcurrency is how many token requests one issuer may have in flight:
	// below the default number of workers (4), so that others always keep some.
	DefaultIssuerConcurrency = 2
	// DefaultIssuerRate is the most token requests per second per issuer: above the
	// benchmark's steady load (5000 jobs with one-minute tokens on one issuer ask about
	// 120 per second), far below what a rotate-now loop or a retry storm would send.
	DefaultIssuerRate = 200
	// DefaultIssuerBurst is how many token requests an issuer may get at once above its rate.
	DefaultIssuerBurst = 400
	// issuerBusyRetry is how soon a job whose issuer had no free slot looks again: slots
	// are held only while a request is under way, so one frees up soon.
	issuerBusyRetry = 200 * time.Millisecond
	// issuerSlotWait is how long a worker waits for a slot of its issuer to free up before
	// the job is requeued: a request takes milliseconds, so when many jobs are due at once
	// (a restart, a failover) a slot frees within this wait, and the jobs go through in
	// turn instead of each coming back issuerBusyRetry later; an issuer that hangs holds
	// its slots for the whole request timeout, and then costs a worker no more than this.
	issuerSlotWait = 100 * time.Millisecond
	// gateIdle is how long an unused gate is kept (a deleted issuer's gate goes then).
	gateIdle = 10 * time.Minute
)

// IssuerLimits bound the token requests sent to each issuer.
type IssuerLimits struct {
	// Concurrency is the most requests in flight per issuer (default DefaultIssuerConcurrency).
	Concurrency int
	// Rate is the most requests per second per issuer, with Burst (defaults
	// DefaultIssuerRate, DefaultIssuerBurst).
	Rate  float64
	Burst int
}

func (l IssuerLimits) withDefaults() IssuerLimits {
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultIssuerConcurrency
	}
	if l.Rate <= 0 {
		l.Rate = DefaultIssuerRate
	}
	if l.Burst <= 0 {
		l.Burst = DefaultIssuerBurst
	}
	return l
}

// issuerGates holds one gate per issuer UID.
type issuerGates struct {
	limits IssuerLimits

	mu    sync.Mutex
	gates map[types.UID]*issuerGate
}

type issuerGate struct {
	inFlight int
	rate     *rate.Limiter
	lastUsed time.Time
	// freed is closed (and replaced) whenever a slot is given back, to wake the workers
	// waiting for one.
	freed chan struct{}
}

func newIssuerGates(l IssuerLimits) *issuerGates {
	return &issuerGates{limits: l.withDefaults(), gates: map[types.UID]*issuerGate{}}
}

// issuerBusy says why a request was not let through, and when to try again.
type issuerBusy struct {
	after time.Duration
	msg   string
}

func (b *issuerBusy) Error() string { return b.msg }

// acquire lets one request to the issuer through, without waiting: it returns the
// function that gives the slot back, or why not and when to try again. Without gates
// (a reconciler built by hand) every request goes through.
func (g *issuerGates) acquire(uid types.UID, name string, now time.Time) (func(), *issuerBusy) {
	if g == nil {
		return func() {}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, gt := range g.gates {
		if gt.inFlight == 0 && now.Sub(gt.lastUsed) > gateIdle {
			delete(g.gates, id)
		}
	}
	gt, ok := g.gates[uid]
	if !ok {
		gt = &issuerGate{rate: rate.NewLimiter(rate.Limit(g.limits.Rate), g.limits.Burst), freed: make(chan struct{})}
		g.gates[uid] = gt
	}
	gt.lastUsed = now
	if gt.inFlight >= g.limits.Concurrency {
		// Wait a little for a slot, without the lock (the wait is in real time: it bounds
		// how long a worker is held, whatever clock the schedule runs on).
		deadline := time.NewTimer(issuerSlotWait)
		defer deadline.Stop()
		for gt.inFlight >= g.limits.Concurrency {
			freed := gt.freed
			g.mu.Unlock()
			select {
			case <-freed:
				g.mu.Lock()
				continue
			case <-deadline.C:
			}
			g.mu.Lock()
			if gt.inFlight >= g.limits.Concurrency {
				return nil, &issuerBusy{after: issuerBusyRetry, msg: fmt.Sprintf(
					"%s has %d token requests in flight, its limit (--issuer-max-concurrent-requests); waiting for one to end", name, gt.inFlight)}
			}
		}
	}
	// The limiter is read at the injected clock's time.
	r := gt.rate.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, &issuerBusy{after: d, msg: fmt.Sprintf(
			"%s is at its token request rate (--issuer-requests-per-second %g); trying again in %s", name, g.limits.Rate, d.Round(time.Millisecond))}
	}
	gt.inFlight++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			gt.inFlight--
			close(gt.freed)
			gt.freed = make(chan struct{})
			g.mu.Unlock()
		})
	}, nil
}

// forget drops the issuer's gate (the issuer was deleted) unless a request still holds
// a slot of it; an idle gate goes anyway after gateIdle.
func (g *issuerGates) forget(uid types.UID) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if gt, ok := g.gates[uid]; ok && gt.inFlight == 0 {
		delete(g.gates, uid)
	}
}

// inFlight is how many requests hold a slot of the issuer's gate (for tests).
func (g *issuerGates) inFlight(uid types.UID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gt, ok := g.gates[uid]; ok {
		return gt.inFlight
	}
	return 0
}
