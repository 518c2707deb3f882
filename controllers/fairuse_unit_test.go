package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/issuer"
)

// TestIssuerGate: an issuer lets through at most its concurrency in flight and its
// rate over time (burst, then one per 1/rate), issuers do not share gates, and a
// released slot is free again.
func TestIssuerGate(t *testing.T) {
	g := newIssuerGates(IssuerLimits{Concurrency: 2, Rate: 1, Burst: 3})
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r1, busy := g.acquire("a", "A", t0)
	if busy != nil {
		t.Fatal(busy.msg)
	}
	r2, busy := g.acquire("a", "A", t0)
	if busy != nil {
		t.Fatal(busy.msg)
	}
	if _, busy := g.acquire("a", "A", t0); busy == nil || !strings.Contains(busy.msg, "2 token requests in flight") {
		t.Fatalf("a third request in flight was let through: %+v", busy)
	}
	if _, busy := g.acquire("b", "B", t0); busy != nil {
		t.Fatalf("another issuer is held by the first one's limit: %s", busy.msg)
	}
	r1()
	r1() // releasing twice frees one slot only
	if g.inFlight("a") != 1 {
		t.Fatalf("in flight %d after one release", g.inFlight("a"))
	}
	r3, busy := g.acquire("a", "A", t0) // the third of the burst
	if busy != nil {
		t.Fatal(busy.msg)
	}
	r2()
	r3()
	_, busy = g.acquire("a", "A", t0)
	if busy == nil || busy.after != time.Second || !strings.Contains(busy.msg, "rate") {
		t.Fatalf("burst spent: %+v", busy)
	}
	if rel, busy := g.acquire("a", "A", t0.Add(time.Second)); busy != nil {
		t.Fatalf("one per second: %s", busy.msg)
	} else {
		rel()
	}
	// An idle issuer's gate is dropped.
	if _, busy := g.acquire("c", "C", t0.Add(time.Hour)); busy != nil {
		t.Fatal(busy.msg)
	}
	g.mu.Lock()
	_, hasA := g.gates["a"]
	g.mu.Unlock()
	if hasA {
		t.Fatal("the gate of an issuer idle for an hour is kept")
	}
}

// TestRotateNowHonoursItsMinimumInterval: the rotate-now annotation is honoured no
// sooner than the minimum interval after the job's last rotation (or first mint); it
// stays until then, and a second request right after a rotation waits again.
func TestRotateNowHonoursItsMinimumInterval(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	long := func(prefix string) *issuer.TokenSet {
		ts := u.tokens(prefix)
		ts.ExpiresAt = ts.IssuedAt.Add(time.Hour) // no scheduled rotation within the test
		return ts
	}
	u.issuer.WithMint(func(context.Context, issuer.Grant) (*issuer.TokenSet, error) { return long("minted"), nil })
	u.issuer.WithRefresh(func(context.Context, string) (*issuer.TokenSet, error) { return long("refreshed"), nil })
	u.r.RotateNowMinInterval = 30 * time.Second
	u.start()
	request := func() {
		t.Helper()
		j := u.job()
		patch := client.MergeFrom(j.DeepCopy())
		if j.Annotations == nil {
			j.Annotations = map[string]string{}
		}
		j.Annotations[jobtokenv1alpha1.AnnotationRotateNow] = "now"
		if err := u.r.Patch(context.Background(), j, patch); err != nil {
			t.Fatal(err)
		}
	}
	request()
	u.clock.Step(5 * time.Second)
	res, err := u.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if n := u.job().Status.Rotations; n != 0 {
		t.Fatalf("rotated %d time(s) 5s after the first mint", n)
	}
	if _, still := u.job().Annotations[jobtokenv1alpha1.AnnotationRotateNow]; !still {
		t.Fatal("the request was dropped instead of deferred")
	}
	if res.RequeueAfter != 25*time.Second {
		t.Fatalf("RequeueAfter %s, want 25s (the rest of the interval)", res.RequeueAfter)
	}
	u.clock.Step(25 * time.Second)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if j := u.job(); j.Status.Rotations != 1 || j.Annotations[jobtokenv1alpha1.AnnotationRotateNow] != "" {
		t.Fatalf("at the interval: rotations %d, annotations %v", j.Status.Rotations, j.Annotations)
	}
	request()
	u.clock.Step(time.Second)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if n := u.job().Status.Rotations; n != 1 {
		t.Fatalf("a second request 1s after a rotation rotated again (%d)", n)
	}
}

// TestLifetimeBelowTheFloor: a token living shorter than the minimum rotation
// interval is used until it expires and replaced only at the floor, and the job says
// so in a condition naming the flag.
func TestLifetimeBelowTheFloor(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	short := func(prefix string) *issuer.TokenSet {
		ts := u.tokens(prefix)
		ts.ExpiresAt = ts.IssuedAt.Add(2 * time.Second)
		return ts
	}
	u.issuer.WithMint(func(context.Context, issuer.Grant) (*issuer.TokenSet, error) { return short("minted"), nil })
	u.issuer.WithRefresh(func(context.Context, string) (*issuer.TokenSet, error) { return short("refreshed"), nil })
	u.r.MinRotationGap = 10 * time.Second
	start := u.clock.Now()
	u.start()
	j := u.job()
	if got := j.Status.NextRotationTime.Time; !got.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("next rotation %s, want the floor after issue (%s)", got, start.Add(10*time.Second))
	}
	c := meta.FindStatusCondition(j.Status.Conditions, jobtokenv1alpha1.ConditionPropagationBudgetUnmet)
	if c == nil || c.Reason != jobtokenv1alpha1.ReasonTokenLifetimeTooShort || !strings.Contains(c.Message, "--min-rotation-interval") {
		t.Fatalf("condition %+v", c)
	}
	u.clock.Step(5 * time.Second) // the token has expired; the floor is not reached
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if calls := u.issuer.Calls(); len(calls) != 1 {
		t.Fatalf("issuer calls before the floor: %v", calls)
	}
	u.clock.Step(5 * time.Second)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	if calls := u.issuer.Calls(); len(calls) != 2 || calls[1] != "refresh" {
		t.Fatalf("issuer calls at the floor: %v", calls)
	}
}

// TestBusyIssuerSpendsNoSingleUseInput: a job with a single-use grant input (a
// handed-over refresh token) that finds its issuer's gate closed writes nothing, so the
// input is not marked as spent; it is redeemed once the gate opens, and the job runs.
func TestBusyIssuerSpendsNoSingleUseInput(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantRefreshToken, interceptor.Funcs{})
	u.r.gates = newIssuerGates(IssuerLimits{Concurrency: 1})
	hold, busy := u.r.gates.acquire("issuer-uid", "TokenIssuer/ns/idp", u.clock.Now())
	if busy != nil {
		t.Fatal(busy.msg)
	}
	for range 3 {
		if _, err := u.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	j := u.job()
	if c := meta.FindStatusCondition(j.Status.Conditions, jobtokenv1alpha1.ConditionReconciling); c == nil || c.Reason != jobtokenv1alpha1.ReasonIssuerBusy {
		t.Fatalf("a job waiting for its issuer: %+v", c)
	}
	if calls := u.issuer.Calls(); len(calls) != 0 {
		t.Fatalf("the issuer was called while its gate was closed: %v", calls)
	}
	hold()
	u.start()
	j = u.job()
	if meta.IsStatusConditionTrue(j.Status.Conditions, jobtokenv1alpha1.ConditionCredentialsLost) || u.chain().InFlight != "" {
		t.Fatalf("the input was taken for spent: %+v", j.Status.Conditions)
	}
	if calls := u.issuer.Calls(); len(calls) != 1 || calls[0] != "mint" {
		t.Fatalf("issuer calls %v, want one redemption", calls)
	}
}

// TestRevocationsCountAgainstIssuerLimits: revoking a deleted job's tokens takes a
// slot of its issuer's gate like a mint or a refresh. With the issuer at its concurrency
// cap, or with its rate spent, the revocation waits (the finalizer stays; the job says
// why once its token has expired) and goes out once the gate opens; a revocation in
// flight holds a slot.
func TestRevocationsCountAgainstIssuerLimits(t *testing.T) {
	deleteJob := func(t *testing.T, u *unitEnv) {
		t.Helper()
		if err := u.r.Delete(context.Background(), u.job()); err != nil {
			t.Fatal(err)
		}
	}
	revokes := func(u *unitEnv) int {
		n := 0
		for _, c := range u.issuer.Calls() {
			if c == "revoke" {
				n++
			}
		}
		return n
	}
	gone := func(u *unitEnv) bool {
		err := u.r.Get(context.Background(), u.key, &jobtokenv1alpha1.ImportJob{})
		return apierrors.IsNotFound(err)
	}
	waitingFor := func(t *testing.T, u *unitEnv, want string) {
		t.Helper()
		c := meta.FindStatusCondition(u.job().Status.Conditions, jobtokenv1alpha1.ConditionReconciling)
		if c == nil || !strings.Contains(c.Message, "waits for the issuer") || !strings.Contains(c.Message, want) {
			t.Fatalf("a revocation waiting for its issuer: condition %+v, want a message naming %q (conditions %+v)", c, want, u.job().Status.Conditions)
		}
	}

	t.Run("concurrency", func(t *testing.T) {
		u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
		u.r.gates = newIssuerGates(IssuerLimits{Concurrency: 1})
		u.start()
		var inFlight int
		u.issuer.WithRevoke(func(context.Context, issuer.Revocation) error {
			inFlight = u.r.gates.inFlight("issuer-uid")
			return nil
		})
		hold, busy := u.r.gates.acquire("issuer-uid", "TokenIssuer/ns/idp", u.clock.Now())
		if busy != nil {
			t.Fatal(busy.msg)
		}
		deleteJob(t, u)
		res, err := u.reconcile()
		if err != nil {
			t.Fatal(err)
		}
		if n := revokes(u); n != 0 || gone(u) {
			t.Fatalf("with the issuer at its cap: %d revocation(s) sent, job gone %v", n, gone(u))
		}
		if res.RequeueAfter != issuerBusyRetry {
			t.Fatalf("RequeueAfter %s, want %s (the gate's retry)", res.RequeueAfter, issuerBusyRetry)
		}
		hold()
		u.clock.Step(issuerBusyRetry)
		if _, err := u.reconcile(); err != nil {
			t.Fatal(err)
		}
		if n := revokes(u); n != 1 || !gone(u) {
			t.Fatalf("once the gate opened: %d revocation(s), job gone %v", n, gone(u))
		}
		if inFlight != 1 {
			t.Fatalf("the revocation held %d slot(s) of the gate while in flight, want 1", inFlight)
		}
		if n := u.r.gates.inFlight("issuer-uid"); n != 0 {
			t.Fatalf("%d slot(s) still held after the revocation", n)
		}
	})

	t.Run("rate", func(t *testing.T) {
		u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
		// One request every ten minutes, no burst beyond it: the mint spends it.
		u.r.gates = newIssuerGates(IssuerLimits{Rate: 1.0 / 600, Burst: 1})
		u.r.RevocationBudget = 15 * time.Minute
		u.start()
		// Deleted once its token has expired, so that the status says what the job waits
		// for (a job still serving a valid token reports Ready instead).
		u.clock.Step(time.Minute)
		deleteJob(t, u)
		res, err := u.reconcile()
		if err != nil {
			t.Fatal(err)
		}
		if n := revokes(u); n != 0 || gone(u) {
			t.Fatalf("with the issuer's rate spent: %d revocation(s) sent, job gone %v", n, gone(u))
		}
		if res.RequeueAfter != 9*time.Minute {
			t.Fatalf("RequeueAfter %s, want 9m (the limiter's delay)", res.RequeueAfter)
		}
		waitingFor(t, u, "rate")
		u.clock.Step(9 * time.Minute)
		if _, err := u.reconcile(); err != nil {
			t.Fatal(err)
		}
		if n := revokes(u); n != 1 || !gone(u) {
			t.Fatalf("once the rate allowed it: %d revocation(s), job gone %v", n, gone(u))
		}
	})
}

// TestMaxLifetimeCapsALongToken: a token the issuer says lives for decades (the most
// the client accepts, 2^31-1 seconds) is held no longer than the job's maxLifetime: the
// job wakes at the cap, not at the token's rotation time decades away, and then revokes
// the token without ever refreshing it.
func TestMaxLifetimeCapsALongToken(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	const absurd = (1<<31 - 1) * time.Second
	u.issuer.WithMint(func(context.Context, issuer.Grant) (*issuer.TokenSet, error) {
		ts := u.tokens("minted")
		ts.ExpiresAt = ts.IssuedAt.Add(absurd)
		return ts, nil
	})
	j := u.job()
	j.Spec.Rotation.MaxLifetime = &metav1.Duration{Duration: time.Hour}
	if err := u.r.Update(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	start := u.clock.Now()
	u.start()
	if got := u.job().Status.TokenExpiresAt.Time; got.Sub(start) < 60*365*24*time.Hour {
		t.Fatalf("the token's expiry %s is not the absurd one the issuer gave", got)
	}
	res, err := u.reconcile()
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != time.Hour {
		t.Fatalf("RequeueAfter %s, want 1h: the job wakes at its maxLifetime, not at the token's rotation", res.RequeueAfter)
	}
	u.clock.Step(time.Hour)
	if _, err := u.reconcile(); err != nil {
		t.Fatal(err)
	}
	j = u.job()
	if j.Status.Phase != jobtokenv1alpha1.PhaseExpired || j.Status.NextRotationTime != nil {
		t.Fatalf("at maxLifetime: phase %s, next rotation %v", j.Status.Phase, j.Status.NextRotationTime)
	}
	if c := meta.FindStatusCondition(j.Status.Conditions, jobtokenv1alpha1.ConditionRevoked); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Revoked condition %+v", c)
	}
	if calls := u.issuer.Calls(); len(calls) != 2 || calls[0] != "mint" || calls[1] != "revoke" {
		t.Fatalf("issuer calls %v, want a mint and, at the cap, a revocation", calls)
	}
}

// TestOrphanRevocationCountsAgainstIssuerLimits: the orphan sweep's revocation of a
// chain whose ImportJob is gone takes a slot of the issuer's gate too: with the issuer at
// its cap the chain is left for the next sweep (no error, nothing sent), and it is
// revoked and deleted once the gate opens.
func TestOrphanRevocationCountsAgainstIssuerLimits(t *testing.T) {
	u := newUnitEnv(t, jobtokenv1alpha1.GrantPassword, interceptor.Funcs{})
	gates := newIssuerGates(IssuerLimits{Concurrency: 1})
	u.start()
	ctx := context.Background()
	j := u.job()
	j.Finalizers = nil
	if err := u.r.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := u.r.Delete(ctx, j); err != nil {
		t.Fatal(err)
	}
	sweeper := &OrphanSweeper{
		Client: u.r.Client, APIReader: u.r.APIReader, Clock: u.clock, VaultNamespace: "vault",
		clients: newClientCache(u.r.IssuerClients, u.r.APIReader, time.Hour), gates: gates,
	}
	u.clock.Step(time.Hour) // past the sweep's grace
	hold, busy := gates.acquire("issuer-uid", "TokenIssuer/ns/idp", u.clock.Now())
	if busy != nil {
		t.Fatal(busy.msg)
	}
	calls := len(u.issuer.Calls())
	if n, err := sweeper.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep with the issuer at its cap: removed %d, error %v; want 0 and no error", n, err)
	}
	if got := u.issuer.Calls()[calls:]; len(got) != 0 {
		t.Fatalf("the issuer was called while its gate was closed: %v", got)
	}
	u.chain() // still stored
	hold()
	if n, err := sweeper.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep once the gate opened: removed %d, error %v", n, err)
	}
	if got := u.issuer.Calls()[calls:]; len(got) != 1 || got[0] != "revoke" {
		t.Fatalf("issuer calls %v, want one revocation", got)
	}
}

// TestIssuerGateWaitsBrieflyForASlot: when every slot of an issuer is taken, a request
// waits up to issuerSlotWait for one to be given back (many jobs due at once go through
// in turn, not each a retry later), and no longer (a hanging issuer holds a worker no
// more than that).
func TestIssuerGateWaitsBrieflyForASlot(t *testing.T) {
	g := newIssuerGates(IssuerLimits{Concurrency: 1})
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	hold, busy := g.acquire("uid", "idp", now)
	if busy != nil {
		t.Fatal(busy.msg)
	}
	go func() {
		time.Sleep(issuerSlotWait / 20)
		hold()
	}()
	release, busy := g.acquire("uid", "idp", now)
	if busy != nil {
		t.Fatalf("a slot given back within the wait was not taken: %s", busy.msg)
	}
	start := time.Now()
	_, busy = g.acquire("uid", "idp", now)
	if busy == nil {
		t.Fatal("a second request went through while the only slot was held")
	}
	if waited := time.Since(start); waited < issuerSlotWait || waited > 50*issuerSlotWait {
		t.Errorf("a request at a held gate waited %s, want about %s", waited, issuerSlotWait)
	}
	release()
	if r, busy := g.acquire("uid", "idp", now); busy != nil {
		t.Errorf("after the release: %s", busy.msg)
	} else {
		r()
	}
}
