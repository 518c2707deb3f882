//go:build integration

package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// generationSeen is one token pair of a job as the vault Secret held it.
type generationSeen struct {
	gen                 int64
	issuedAt, expiresAt time.Time // on the operator's clock, with sub-second precision
	access, refresh     string
}

// readGeneration decodes the vault Secret's current pair.
func readGeneration(s *corev1.Secret) (generationSeen, error) {
	r := tokenchain.Decode(s.Data)
	if r.Generation == 0 || r.IssuedAt.IsZero() || r.ExpiresAt.IsZero() {
		return generationSeen{}, fmt.Errorf("stored chain %s holds no complete pair", s.Name)
	}
	return generationSeen{access: r.AccessToken, refresh: r.RefreshToken, gen: r.Generation, issuedAt: r.IssuedAt, expiresAt: r.ExpiresAt}, nil
}

// last returns the newest element of a list, "" when it is empty.
func last(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[len(list)-1]
}

// refreshTokenLeaks lists every Secret of the job namespace and reports each one holding
// a refresh token the issuer issued (in its data or annotations) or a key naming one. It
// returns the scanned Secrets' names with their token revision annotation.
func (h *harness) refreshTokenLeaks() (scanned map[string]string, leaks []string) {
	h.t.Helper()
	refresh := h.issuer.Issued().Refresh
	secrets := &corev1.SecretList{}
	h.must(env.Client.List(h.ctx, secrets, client.InNamespace(h.ns)))
	scanned = map[string]string{}
	for _, s := range secrets.Items {
		scanned[s.Name] = s.Annotations[jobtokenv1alpha1.AnnotationTokenRevision]
		values := map[string]string{}
		for k, v := range s.Data {
			values["data "+k] = string(v)
		}
		for k, v := range s.Annotations {
			values["annotation "+k] = v
		}
		for where, v := range values {
			if strings.Contains(strings.ToLower(where), "refresh") {
				leaks = append(leaks, fmt.Sprintf("Secret %s has a refresh-token key (%s)", s.Name, where))
			}
			for _, rt := range refresh {
				if strings.Contains(v, rt) {
					leaks = append(leaks, fmt.Sprintf("Secret %s holds a refresh token (%s)", s.Name, where))
					break
				}
			}
		}
	}
	return scanned, leaks
}

// The full lifecycle: first token, Job, rotations within the propagation budget, no
// refresh token where workers can read it, revocation at the end.
func TestLifecycle(t *testing.T) {
	// With 5s tokens, rotating at 95% of the life would leave 0.25s; the 2s budget must
	// move every rotation to at least 2s before expiry (the budget decides, not the
	// fraction).
	const ttl, fraction, budget = 5 * time.Second, "0.95", 2 * time.Second
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: ttl}})
	h.startManager(managerOptions{})
	job := h.importJob("lifecycle", jobtokenv1alpha1.GrantPassword)
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{Fraction: fraction, Jitter: "0", PropagationBudget: &metav1.Duration{Duration: budget}}
	h.must(env.Client.Create(h.ctx, job))

	testenv.Eventually(h.t, 20*time.Second, "the first token and the Job", func() bool {
		j := &batchv1.Job{}
		return env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: job.Name}, j) == nil
	})
	job = h.getJob(job.Name)
	if !controllerutil.ContainsFinalizer(job, jobtokenv1alpha1.Finalizer) {
		t.Errorf("finalizer missing: %v", job.Finalizers)
	}

	// Worker Secret: only what workers need, owned by the ImportJob.
	ws, err := h.workerSecret(job)
	h.must(err)
	for _, k := range []string{jobtokenv1alpha1.KeyAccessToken, jobtokenv1alpha1.KeyTokenType, jobtokenv1alpha1.KeyExpiresAt} {
		if len(ws.Data[k]) == 0 {
			t.Errorf("worker Secret lacks %s", k)
		}
	}
	if len(ws.Data) != 3 {
		t.Errorf("worker Secret holds %d keys, want exactly 3", len(ws.Data))
	}
	if !metav1.IsControlledBy(ws, job) || ws.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] == "" {
		t.Errorf("worker Secret not owned by the ImportJob or without revision: %v %v", ws.OwnerReferences, ws.Annotations)
	}
	// Vault Secret: in the operator's namespace, labelled with the job.
	vs, err := h.vaultSecret(job)
	h.must(err)
	if len(vs.Data[tokenchain.KeyRefreshToken]) == 0 || vs.Labels[jobtokenv1alpha1.LabelImportJobUID] != string(job.UID) ||
		vs.Labels[jobtokenv1alpha1.LabelImportJobNamespace] != h.ns || vs.Labels[jobtokenv1alpha1.LabelImportJobName] != job.Name {
		t.Errorf("vault Secret incomplete: labels %v", vs.Labels)
	}

	// The Job: volume injected read-only, mode 0400, no subPath, JOBTOKEN_FILE.
	bj := &batchv1.Job{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: job.Name}, bj))
	assertInjected(t, bj, workerSecretName(job))

	first := string(ws.Data[jobtokenv1alpha1.KeyAccessToken])
	// At every poll: record the vault's pair, and scan the job namespace's Secrets for
	// every refresh token issued so far. For each rotation, measure how long before the
	// old token's expiry the new one was received and seen in the worker Secret.
	gens := map[int64]generationSeen{}
	workerSeenAt := map[int64]time.Time{} // first time the worker Secret showed a revision
	workerScans := map[string]bool{}      // worker Secret revisions the refresh-token scan covered
	leaks := map[string]bool{}
	testenv.Eventually(h.t, 40*time.Second, "5 rotations", func() bool {
		scanned, found := h.refreshTokenLeaks()
		for name, rev := range scanned {
			if name == workerSecretName(job) {
				workerScans[rev] = true
			}
		}
		for _, l := range found {
			leaks[l] = true
		}
		if s, err := h.vaultSecret(job); err == nil {
			if g, err := readGeneration(s); err == nil {
				if _, ok := gens[g.gen]; !ok {
					gens[g.gen] = g
				}
			}
		}
		if s, err := h.workerSecret(job); err == nil {
			if rev, err := strconv.ParseInt(s.Annotations[jobtokenv1alpha1.AnnotationTokenRevision], 10, 64); err == nil {
				if _, ok := workerSeenAt[rev]; !ok {
					workerSeenAt[rev] = time.Now()
				}
			}
		}
		return h.getJob(job.Name).Status.Rotations >= 5
	})
	// The budget counts back from the expiry the workers read: the worker Secret's
	// expires_at, the vault's expiry in whole seconds. The schedule starts the rotation a
	// lead (at least 1s) before that deadline so that the operator's own latency fits:
	// the new pair must be received no later than the deadline, no allowance.
	var received, seen []time.Duration
	for gen, g := range gens {
		prev, ok := gens[gen-1]
		if !ok {
			continue
		}
		workersExpiry := prev.expiresAt.Truncate(time.Second)
		received = append(received, workersExpiry.Sub(g.issuedAt))
		if at, ok := workerSeenAt[gen]; ok {
			seen = append(seen, workersExpiry.Sub(at))
			if !at.Before(workersExpiry) {
				t.Errorf("generation %d reached the worker Secret only at %s, after the old token expired at %s", gen, at, workersExpiry)
			}
		}
	}
	if len(received) < 4 {
		t.Fatalf("measured %d rotations, want at least 4 (generations seen: %d)", len(received), len(gens))
	}
	// A rotation decided by the fraction would leave at most 0.25s, one ignoring the
	// budget but keeping the lead about 1s.
	if m := slices.Min(received); m < budget {
		t.Errorf("a new token was received only %s before the old one expired; the budget is %s", m, budget)
	}
	t.Logf("before the old token's expiry, over %d rotations (%s tokens, fraction %s, budget %s): new token received %v, seen in the worker Secret %v",
		len(received), ttl, fraction, budget, roundAll(received), roundAll(seen))
	for l := range leaks {
		t.Errorf("a refresh token where workers can read it: %s in the job namespace", l)
	}
	if revs := len(workerScans); revs < 5 {
		t.Errorf("the refresh-token scan covered the worker Secret at %d revisions, want every one of at least 5", revs)
	}

	job = h.getJob(job.Name)
	if !conditionTrue(job, jobtokenv1alpha1.ConditionReady) || job.Status.Phase != jobtokenv1alpha1.PhaseRunning {
		t.Errorf("not Ready/Running after rotations: phase %s, conditions %+v", job.Status.Phase, job.Status.Conditions)
	}
	if job.Status.NextRotationTime == nil || job.Status.TokenExpiresAt == nil || job.Status.LastRotationTime == nil {
		t.Errorf("schedule missing from status: %+v", job.Status)
	}
	ws, err = h.workerSecret(job)
	h.must(err)
	if string(ws.Data[jobtokenv1alpha1.KeyAccessToken]) == first {
		t.Errorf("the worker Secret still holds the first token after %d rotations", job.Status.Rotations)
	}
	// Just before the end the newest pair is alive; after it, only revocation ends the
	// refresh token (it lives 10 minutes) and its family.
	issued := h.issuer.Issued()
	if !h.issuer.Active(last(issued.Access)) || !h.issuer.Active(last(issued.Refresh)) {
		t.Fatalf("the newest pair is not active before the end: the revocation check would prove nothing")
	}
	before := h.issuer.Counters()

	// Complete → Succeeded, revoked at the issuer, Secrets and finalizer gone.
	h.markJob(job.Name, batchv1.JobComplete)
	testenv.Eventually(h.t, 20*time.Second, "revocation after completion", func() bool {
		j := h.getJob(job.Name)
		return j.Status.Phase == jobtokenv1alpha1.PhaseSucceeded && conditionTrue(j, jobtokenv1alpha1.ConditionRevoked)
	})
	h.assertRevoked(before, devissuer.ReasonRevoked)
	if _, err := h.workerSecret(job); !apierrors.IsNotFound(err) {
		t.Errorf("worker Secret not deleted: %v", err)
	}
	if _, err := h.vaultSecret(job); !apierrors.IsNotFound(err) {
		t.Errorf("vault Secret not deleted: %v", err)
	}
	testenv.Eventually(h.t, 10*time.Second, "finalizer released", func() bool { return len(h.getJob(job.Name).Finalizers) == 0 })
	events := h.events(job.Name)
	for _, reason := range []string{EventMinted, EventRevoked, EventJobCreated} {
		if !hasEvent(events, reason) {
			t.Errorf("no %s event; events: %v", reason, events)
		}
	}
	// Scheduled rotations are counted in the status and the metrics, not told one by
	// one: an event per rotation is an API write per rotation.
	if hasEvent(events, EventRotated) {
		t.Errorf("a Rotated event for a scheduled rotation; events: %v", events)
	}
	if job.Status.Remints != 0 {
		t.Errorf("%d re-mints in a plain run", job.Status.Remints)
	}
	h.assertNoReuse()
}

// assertRevoked checks, after a job ended, that the issuer revoked exactly the job's one
// family (by reason: ReasonRevoked for RFC 7009, ReasonLogout for FOLIO) since before,
// that no family is alive any more, and that no token the issuer handed out is active.
func (h *harness) assertRevoked(before devissuer.Counters, reason string) {
	h.t.Helper()
	after := h.issuer.Counters()
	if got := after.FamiliesRevokedByReason[reason] - before.FamiliesRevokedByReason[reason]; got != 1 {
		h.t.Errorf("the issuer ended %d families by %s at the end, want 1", got, reason)
	}
	if reason == devissuer.ReasonRevoked && after.Revocations <= before.Revocations {
		h.t.Errorf("the issuer answered no revocation request at the end")
	}
	if reason == devissuer.ReasonLogout && after.Logouts <= before.Logouts {
		h.t.Errorf("the issuer saw no logout at the end")
	}
	if after.ActiveFamilies != 0 {
		h.t.Errorf("%d families still active at the issuer after the end", after.ActiveFamilies)
	}
	for _, tok := range h.issuer.Issued().All() {
		if h.issuer.Active(tok) {
			h.t.Errorf("a token the issuer issued is still active after the end")
			return
		}
	}
}

func assertInjected(t *testing.T, bj *batchv1.Job, secretName string) {
	t.Helper()
	spec := bj.Spec.Template.Spec
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == jobtokenv1alpha1.TokenVolumeName {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secretName || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o400 {
		t.Fatalf("token volume not injected as a 0400 Secret volume: %+v", spec.Volumes)
	}
	for _, c := range spec.Containers {
		var mounted, env bool
		for _, m := range c.VolumeMounts {
			if m.Name == jobtokenv1alpha1.TokenVolumeName {
				mounted = m.ReadOnly && m.SubPath == "" && m.MountPath == jobtokenv1alpha1.DefaultTokenMountPath
			}
		}
		for _, e := range c.Env {
			if e.Name == jobtokenv1alpha1.EnvTokenFile && e.Value == filepath.Join(jobtokenv1alpha1.DefaultTokenMountPath, jobtokenv1alpha1.KeyAccessToken) {
				env = true
			}
		}
		if !mounted || !env {
			t.Errorf("container %s: read-only mount without subPath %v, JOBTOKEN_FILE %v", c.Name, mounted, env)
		}
	}
	if bj.Spec.Template.Labels[jobtokenv1alpha1.LabelManagedBy] != jobtokenv1alpha1.ManagedByValue {
		t.Errorf("pod template lacks the operator's label, so its pods would not be cached")
	}
}

// A refresh whose answer is lost (committed at the issuer, then dropped) is re-minted,
// never replayed.
func TestCommitThenDropRemints(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	job := h.runningJob("drop", jobtokenv1alpha1.GrantPassword)

	h.issuer.SetFaults(devissuer.Faults{CommitThenDrop: 1})
	testenv.Eventually(h.t, 30*time.Second, "a re-mint after the dropped refresh", func() bool { return h.getJob(job.Name).Status.Remints >= 1 })
	before := h.getJob(job.Name).Status.Rotations
	testenv.Eventually(h.t, 30*time.Second, "rotations continuing", func() bool { return h.getJob(job.Name).Status.Rotations >= before+2 })
	c := h.issuer.Counters()
	if got := c.FaultsInjected[devissuer.FaultCommitThenDrop]; got != 1 {
		t.Errorf("the issuer injected %d commit-then-drop faults, want 1: %+v", got, c.FaultsInjected)
	}
	if got := c.TokenRequests[devissuer.GrantKeyRefreshToken][devissuer.ResultDropped]; got != 1 {
		t.Errorf("the issuer dropped %d refresh answers, want 1: %+v", got, c.TokenRequests)
	}
	if got := h.getJob(job.Name).Status.Remints; got != 1 {
		t.Errorf("%d re-mints for one dropped refresh, want 1", got)
	}
	if !hasEvent(h.events(job.Name), EventReminted) {
		t.Errorf("no Reminted event")
	}
	h.assertNoReuse()
}

// The manager stops with a refresh marked in flight; its successor never
// replays the refresh token and re-mints.
func TestRestartWithMarkerInFlight(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	first := h.startManager(managerOptions{})
	job := h.runningJob("restart", jobtokenv1alpha1.GrantPassword)
	first.stop()
	job = h.getJob(job.Name)

	// What a crash between "mark" and "persist" leaves: the marker, and a refresh token
	// that the issuer already rotated (the request reached it).
	vs, err := h.vaultSecret(job)
	h.must(err)
	oldRefresh := string(vs.Data[tokenchain.KeyRefreshToken])
	rotated := refreshAtIssuer(t, h, oldRefresh)
	if rotated == "" {
		t.Fatal("could not rotate the chain at the issuer directly")
	}
	gen, _ := strconv.ParseInt(string(vs.Data[tokenchain.KeyGeneration]), 10, 64)
	vs.Data[tokenchain.KeyInFlight] = []byte(tokenchain.Marker(tokenchain.OpRefresh, gen, time.Now()))
	h.must(env.Client.Update(h.ctx, vs))
	remintsBefore := job.Status.Remints

	h.startManager(managerOptions{})
	testenv.Eventually(h.t, 30*time.Second, "a re-mint after the restart", func() bool { return h.getJob(job.Name).Status.Remints > remintsBefore })
	vs, _ = h.vaultSecret(job)
	if string(vs.Data[tokenchain.KeyInFlight]) != "" {
		t.Errorf("marker still set after recovery")
	}
	testenv.Eventually(h.t, 20*time.Second, "rotations after recovery", func() bool { return h.getJob(job.Name).Status.Rotations >= 2 })
	// Replaying oldRefresh would have counted as reuse at the issuer.
	h.assertNoReuse()
}

// A session maximum shorter than the job; Password re-mints before it.
func TestSessionMaximumRemint(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 3 * time.Second, SessionMax: 8 * time.Second}})
	h.startManager(managerOptions{})
	job := h.importJob("sessionmax", jobtokenv1alpha1.GrantPassword)
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 40*time.Second, "two re-mints before session maxima", func() bool { return h.getJob(job.Name).Status.Remints >= 2 })
	if c := h.issuer.Counters(); c.SessionMaxEnded != 0 {
		t.Errorf("the operator refreshed into the session maximum %d times", c.SessionMaxEnded)
	}
	job = h.getJob(job.Name)
	if conditionTrue(job, jobtokenv1alpha1.ConditionSessionExpiring) || !conditionTrue(job, jobtokenv1alpha1.ConditionReady) {
		t.Errorf("unexpected conditions: %+v", job.Status.Conditions)
	}
	h.assertNoReuse()
}

// With a RefreshToken grant nothing can re-mint: SessionExpiring ahead of time, the
// redeemed input is removed from its Secret, and no new session is ever minted.
func TestSessionMaximumWarnsWithoutRemint(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 3 * time.Second, SessionMax: 12 * time.Second}})
	h.startManager(managerOptions{})
	_, handed := passwordGrant(t, h)
	logins := h.issuer.Counters().TokenRequests[devissuer.GrantKeyPassword][devissuer.ResultOK]
	h.must(env.Client.Create(h.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "handover"},
		Data:       map[string][]byte{"refresh_token": []byte(handed), "keep": []byte("x")},
	}))
	job := h.importJob("handover", jobtokenv1alpha1.GrantRefreshToken)
	job.Spec.Credentials.RefreshToken = &jobtokenv1alpha1.RefreshTokenGrant{SecretRef: jobtokenv1alpha1.SecretKeySelector{Name: "handover"}}
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "running", func() bool { return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning })
	in := &corev1.Secret{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "handover"}, in))
	if _, ok := in.Data["refresh_token"]; ok || string(in.Data["keep"]) != "x" {
		t.Errorf("the redeemed refresh token was not removed (or other keys were): keys %v", keysOf(in.Data))
	}
	var warnedAt time.Time
	var sessionEnd time.Time
	testenv.Eventually(h.t, 20*time.Second, "SessionExpiring", func() bool {
		j := h.getJob(job.Name)
		if conditionTrue(j, jobtokenv1alpha1.ConditionSessionExpiring) {
			warnedAt = time.Now()
			sessionEnd = j.Status.SessionExpiresAt.Time
			return true
		}
		return false
	})
	if !warnedAt.Before(sessionEnd) {
		t.Errorf("SessionExpiring came at %s, not ahead of the session end %s", warnedAt, sessionEnd)
	}
	if !hasEvent(h.events(job.Name), EventSessionExpiring) {
		t.Errorf("no SessionExpiring event")
	}
	// A re-mint would come a budget before the session end: look once it has passed.
	time.Sleep(time.Until(sessionEnd.Add(time.Second)))
	c := h.issuer.Counters()
	if got := c.TokenRequests[devissuer.GrantKeyPassword][devissuer.ResultOK]; got != logins {
		t.Errorf("%d logins at the issuer after the handover, want none", got-logins)
	}
	if j := h.getJob(job.Name); j.Status.Remints != 0 {
		t.Errorf("%d re-mints with a grant that cannot mint", j.Status.Remints)
	}
	if c.AccessTokensIssued != c.Refreshes+1 {
		t.Errorf("the issuer issued %d access tokens for %d refreshes after one login: something minted", c.AccessTokensIssued, c.Refreshes)
	}
	h.assertNoReuse()
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The issuer is down for 3 token lifetimes: failures are reported, requests back off,
// rotation resumes.
func TestIssuerOutage(t *testing.T) {
	const ttl = 4 * time.Second
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: ttl}})
	h.startManager(managerOptions{})
	job := h.runningJob("outage", jobtokenv1alpha1.GrantPassword)

	before := tokenRequestCount(h.issuer.Counters())
	h.issuer.SetFaults(devissuer.Faults{Down: true})
	outageStart := time.Now()
	testenv.Eventually(h.t, 3*ttl, "TokenRefreshFailed", func() bool {
		return conditionTrue(h.getJob(job.Name), jobtokenv1alpha1.ConditionTokenRefreshFailed)
	})
	time.Sleep(time.Until(outageStart.Add(3 * ttl)))
	during := tokenRequestCount(h.issuer.Counters()) - before
	job = h.getJob(job.Name)
	c := meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionTokenRefreshFailed)
	if c == nil || !strings.Contains(c.Message, "retrying in") || job.Status.FailedRotationAttempts == 0 {
		t.Errorf("outage not reported: %+v", job.Status)
	}
	// Backoff 1s, 2s, 4s, 4s... over 12s: at most ~6 requests, never a storm.
	if during > 8 {
		t.Errorf("%d token requests during a %s outage: the backoff does not bound them", during, 3*ttl)
	}
	h.issuer.SetFaults(devissuer.Faults{})
	rotationsBefore := job.Status.Rotations
	testenv.Eventually(h.t, 20*time.Second, "recovery", func() bool {
		j := h.getJob(job.Name)
		return j.Status.Rotations > rotationsBefore && !conditionTrue(j, jobtokenv1alpha1.ConditionTokenRefreshFailed) &&
			conditionTrue(j, jobtokenv1alpha1.ConditionReady) && j.Status.FailedRotationAttempts == 0
	})
	t.Logf("token requests during the outage: %d", during)
	h.assertNoReuse()
}

func tokenRequestCount(c devissuer.Counters) int64 {
	var n int64
	for _, byResult := range c.TokenRequests {
		for _, v := range byResult {
			n += v
		}
	}
	return n
}

// Deleting mid-run revokes; with the issuer down, the finalizer is released after the
// revocation budget with RevocationFailed.
func TestDeleteRevokes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	job := h.runningJob("delete", jobtokenv1alpha1.GrantPassword)
	ws, err := h.workerSecret(job)
	h.must(err)
	vs, err := h.vaultSecret(job)
	h.must(err)
	access, refresh := string(ws.Data[jobtokenv1alpha1.KeyAccessToken]), string(vs.Data[tokenchain.KeyRefreshToken])
	issued := h.issuer.Issued()
	if access == "" || refresh == "" || !h.issuer.Active(last(issued.Access)) || !h.issuer.Active(last(issued.Refresh)) {
		t.Fatal("no live pair before the delete: the revocation check would prove nothing")
	}
	before := h.issuer.Counters()
	h.must(env.Client.Delete(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "the ImportJob gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job), &jobtokenv1alpha1.ImportJob{}))
	})
	h.assertRevoked(before, devissuer.ReasonRevoked)
	if _, err := h.vaultSecret(job); !apierrors.IsNotFound(err) {
		t.Errorf("vault Secret left behind: %v", err)
	}

	job2 := h.runningJob("delete-down", jobtokenv1alpha1.GrantPassword)
	job2 = h.getJob(job2.Name)
	before = h.issuer.Counters()
	h.issuer.SetFaults(devissuer.Faults{Down: true})
	start := time.Now()
	h.must(env.Client.Delete(h.ctx, job2))
	testenv.Eventually(h.t, revocationBudget+15*time.Second, "the finalizer released despite the issuer being down", func() bool {
		return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job2), &jobtokenv1alpha1.ImportJob{}))
	})
	took := time.Since(start)
	if took < revocationBudget-time.Second {
		t.Errorf("gave up after %s, before the revocation budget %s", took, revocationBudget)
	}
	if !hasEvent(h.events(job2.Name), EventRevocationFailed) {
		t.Errorf("no RevocationFailed event: %v", h.events(job2.Name))
	}
	if _, err := h.vaultSecret(job2); !apierrors.IsNotFound(err) {
		t.Errorf("vault Secret left behind after RevocationFailed: %v", err)
	}
	if after := h.issuer.Counters(); after.FamiliesRevoked != before.FamiliesRevoked || after.ActiveFamilies != 1 {
		t.Errorf("with the issuer down nothing can be revoked: %d families ended, %d active, want 0 and 1",
			after.FamiliesRevoked-before.FamiliesRevoked, after.ActiveFamilies)
	}
	t.Logf("finalizer released %s after delete with the issuer down (budget %s)", took.Round(time.Millisecond), revocationBudget)
}

// Two managers with leader election: only the leader rotates; when it stops, the lease
// passes to the other, which carries on the same chain without replaying a refresh token.
func TestTwoManagers(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	managers := map[string]*runningManager{
		"a": h.startManager(managerOptions{leaderElection: true, name: "a"}),
		"b": h.startManager(managerOptions{leaderElection: true, name: "b"}),
	}
	var leader, follower string
	testenv.Eventually(h.t, 20*time.Second, "one leader", func() bool {
		var elected, waiting []string
		for name, m := range managers {
			select {
			case <-m.elected:
				elected = append(elected, name)
			default:
				waiting = append(waiting, name)
			}
		}
		if len(elected) > 1 {
			t.Fatalf("managers %v lead at once", elected)
		}
		if len(elected) == 0 || h.leaseHolder() == "" {
			return false
		}
		leader, follower = elected[0], waiting[0]
		return true
	})
	holder := h.leaseHolder()
	job := h.importJob("two", jobtokenv1alpha1.GrantPassword)
	h.must(env.Client.Create(h.ctx, job))
	// Stop the leader right after a rotation (the status is its last write), so that no
	// refresh is under way.
	testenv.Eventually(h.t, 40*time.Second, "2 rotations by the first leader", func() bool { return h.getJob(job.Name).Status.Rotations >= 2 })
	select {
	case <-managers[follower].elected:
		t.Fatalf("both managers lead at once")
	default:
	}
	managers[leader].stop()
	rotationsBefore := h.getJob(job.Name).Status.Rotations

	select {
	case <-managers[follower].elected:
	case <-time.After(20 * time.Second):
		t.Fatalf("manager %s never took over after %s stopped", follower, leader)
	}
	if now := h.leaseHolder(); now == "" || now == holder {
		t.Errorf("the lease did not change hands: holder %q before, %q after", holder, now)
	}
	testenv.Eventually(h.t, 30*time.Second, "2 rotations by the new leader", func() bool { return h.getJob(job.Name).Status.Rotations >= rotationsBefore+2 })

	// A quiet point: with both managers stopped, each persisted refresh must match one
	// refresh at the issuer.
	managers[follower].stop()
	job = h.getJob(job.Name)
	vs, err := h.vaultSecret(job)
	h.must(err)
	if string(vs.Data[tokenchain.KeyInFlight]) != "" {
		t.Errorf("a refresh is marked in flight at the quiet point")
	}
	gen, err := strconv.ParseInt(string(vs.Data[tokenchain.KeyGeneration]), 10, 64)
	h.must(err)
	c := h.issuer.Counters()
	// Generation counts every pair persisted: the first mint, each re-mint, each refresh.
	if persisted := gen - 1 - int64(job.Status.Remints); c.Refreshes != persisted {
		t.Errorf("issuer saw %d refreshes for %d persisted refreshes (generation %d, remints %d)", c.Refreshes, persisted, gen, job.Status.Remints)
	}
	if job.Status.Remints != 0 {
		t.Errorf("%d re-mints across the hand-over, want 0", job.Status.Remints)
	}
	h.assertNoReuse()
}

// kubectl describe shows phase, conditions and events.
func TestKubectlDescribe(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	job := h.importJob("described", jobtokenv1alpha1.GrantClientCredentials)
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "a rotation", func() bool { return h.getJob(job.Name).Status.Rotations >= 1 })

	user, err := env.AddUser(envtest.User{Name: "describe", Groups: []string{"system:masters"}}, nil)
	h.must(err)
	kc, err := user.KubeConfig()
	h.must(err)
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	h.must(os.WriteFile(kcPath, kc, 0o600))
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, env.KubectlPath, "--kubeconfig", kcPath, "-n", h.ns, "describe", "importjob", job.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl describe: %v\n%s", err, out)
	}
	for _, want := range []string{"Phase:", "Running", "Conditions:", "CredentialsReady", "Ready", "Events:", "Minted", "Rotated"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl describe lacks %q:\n%s", want, out)
		}
	}
}

// A signing-key rotation at the issuer and the rotate-now annotation both
// rotate at once.
func TestRotateAtOnce(t *testing.T) {
	// Long tokens: any rotation within the test is due to the trigger, not the schedule.
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: 10 * time.Minute}})
	h.startManager(managerOptions{})
	job := h.runningJob("keys", jobtokenv1alpha1.GrantPassword)
	oldKid := h.getJob(job.Name).Status.TokenKeyID
	if oldKid == "" {
		t.Fatal("status has no token key id")
	}

	newKid := h.issuer.RotateSigningKey()
	start := time.Now()
	testenv.Eventually(h.t, 10*time.Second, "rotation after the key change", func() bool {
		j := h.getJob(job.Name)
		return j.Status.Rotations >= 1 && j.Status.TokenKeyID == newKid
	})
	t.Logf("rotated %s after the issuer's key rotation", time.Since(start).Round(time.Millisecond))
	ws, _ := h.workerSecret(job)
	if !resourceAccepts(t, h, string(ws.Data[jobtokenv1alpha1.KeyAccessToken])) {
		t.Errorf("the new token is refused by the protected resource")
	}

	j := h.getJob(job.Name)
	patch := client.MergeFrom(j.DeepCopy())
	if j.Annotations == nil {
		j.Annotations = map[string]string{}
	}
	j.Annotations[jobtokenv1alpha1.AnnotationRotateNow] = "please"
	h.must(env.Client.Patch(h.ctx, j, patch))
	testenv.Eventually(h.t, 10*time.Second, "rotation on request and the annotation removed", func() bool {
		j := h.getJob(job.Name)
		_, still := j.Annotations[jobtokenv1alpha1.AnnotationRotateNow]
		return j.Status.Rotations >= 2 && !still
	})
	h.assertNoReuse()
}

func resourceAccepts(t *testing.T, h *harness, token string) bool {
	t.Helper()
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, h.issuer.URL()+"/api/records", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Pods get the new revision after a rotation (the kubelet then resyncs at once).
func TestNudgePods(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	job := h.importJob("nudge", jobtokenv1alpha1.GrantPassword)
	h.must(env.Client.Create(h.ctx, job))
	bj := &batchv1.Job{}
	testenv.Eventually(h.t, 20*time.Second, "the Job", func() bool {
		return env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: job.Name}, bj) == nil
	})
	pod := h.createPod(bj, "nudge-worker-0")
	testenv.Eventually(h.t, 20*time.Second, "the pod annotated with a later revision", func() bool {
		p := &corev1.Pod{}
		h.must(env.Client.Get(h.ctx, client.ObjectKeyFromObject(pod), p))
		j := h.getJob(job.Name)
		return j.Status.Rotations >= 1 && p.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] == strconv.FormatInt(j.Status.TokenRevision, 10) &&
			p.Annotations[jobtokenv1alpha1.AnnotationTokenRevision] != pod.Annotations[jobtokenv1alpha1.AnnotationTokenRevision]
	})
}

// A template that mounts the token itself is refused with Stalled; a missing issuer is waited for.
func TestRefusedAndWaiting(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	bad := h.importJob("subpath", jobtokenv1alpha1.GrantClientCredentials)
	bad.Spec.Template.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "jobtoken", MountPath: "/t", SubPath: "access_token"}}
	h.must(env.Client.Create(h.ctx, bad))
	testenv.Eventually(h.t, 15*time.Second, "Stalled", func() bool {
		j := h.getJob(bad.Name)
		c := meta.FindStatusCondition(j.Status.Conditions, jobtokenv1alpha1.ConditionStalled)
		return c != nil && c.Status == "True" && strings.Contains(c.Message, "volumeMounts") && strings.Contains(c.Message, "subPath")
	})
	if _, err := h.vaultSecret(h.getJob(bad.Name)); !apierrors.IsNotFound(err) {
		t.Errorf("a refused job minted tokens")
	}

	waitJob := h.importJob("no-issuer", jobtokenv1alpha1.GrantClientCredentials)
	waitJob.Spec.IssuerRef.Name = "missing"
	h.must(env.Client.Create(h.ctx, waitJob))
	testenv.Eventually(h.t, 15*time.Second, "waiting for the issuer", func() bool {
		c := meta.FindStatusCondition(h.getJob(waitJob.Name).Status.Conditions, jobtokenv1alpha1.ConditionReconciling)
		return c != nil && c.Reason == jobtokenv1alpha1.ReasonIssuerNotFound
	})
	if j := h.getJob(waitJob.Name); conditionTrue(j, jobtokenv1alpha1.ConditionStalled) || j.Status.Phase != jobtokenv1alpha1.PhasePending {
		t.Errorf("a missing issuer must be waited for, not failed: %+v", j.Status)
	}
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond).String()
	}
	return out
}

// A vault Secret whose ImportJob vanished while the operator was down (finalizer removed
// by hand) is revoked and deleted by the orphan sweep.
func TestOrphanSweep(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	first := h.startManager(managerOptions{})
	job := h.runningJob("orphan", jobtokenv1alpha1.GrantPassword)
	first.stop()
	job = h.getJob(job.Name)
	vs, err := h.vaultSecret(job)
	h.must(err)
	access, refresh := string(vs.Data[tokenchain.KeyAccessToken]), string(vs.Data[tokenchain.KeyRefreshToken])
	job.Finalizers = nil
	h.must(env.Client.Update(h.ctx, job))
	h.must(env.Client.Delete(h.ctx, job))
	testenv.Eventually(h.t, 10*time.Second, "the ImportJob gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(h.ctx, client.ObjectKeyFromObject(job), &jobtokenv1alpha1.ImportJob{}))
	})
	if !h.issuer.Active(refresh) {
		t.Fatal("the refresh token died before the sweep: the test would prove nothing")
	}
	before := h.issuer.Counters()

	h.startManager(managerOptions{})
	testenv.Eventually(h.t, 20*time.Second, "the orphaned vault Secret deleted", func() bool {
		_, err := h.vaultSecret(job)
		return apierrors.IsNotFound(err)
	})
	if h.issuer.Active(refresh) || h.issuer.Active(access) {
		t.Errorf("the orphaned chain was deleted without being revoked")
	}
	h.assertRevoked(before, devissuer.ReasonRevoked)
}

// TokenExchange: the submitter's token is exchanged once and removed from its Secret;
// the job's tokens are revoked at the end, the submitter's own token never is.
func TestTokenExchangeLeavesTheUserAlone(t *testing.T) {
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: time.Minute}})
	h.startManager(managerOptions{})
	userAccess, _ := passwordGrant(t, h)
	h.must(env.Client.Create(h.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "submitter"},
		Data:       map[string][]byte{"token": []byte(userAccess)},
	}))
	job := h.importJob("exchange", jobtokenv1alpha1.GrantTokenExchange)
	job.Spec.Credentials.TokenExchange = &jobtokenv1alpha1.TokenExchangeGrant{
		SubjectTokenSecretRef: jobtokenv1alpha1.SecretKeySelector{Name: "submitter"},
		SubjectTokenType:      "urn:ietf:params:oauth:token-type:access_token",
	}
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "running", func() bool { return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning })
	in := &corev1.Secret{}
	h.must(env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "submitter"}, in))
	if _, ok := in.Data["token"]; ok {
		t.Errorf("the submitter's token was not removed after the exchange")
	}
	ws, err := h.workerSecret(job)
	h.must(err)
	jobAccess := string(ws.Data[jobtokenv1alpha1.KeyAccessToken])
	if jobAccess == "" || jobAccess == userAccess {
		t.Fatalf("the workers did not get a token of their own")
	}
	vs, err := h.vaultSecret(job)
	h.must(err)
	jobRefresh := string(vs.Data[tokenchain.KeyRefreshToken])
	if !h.issuer.Active(jobAccess) || !h.issuer.Active(jobRefresh) {
		t.Fatal("the job's pair is not active before the end: the revocation check would prove nothing")
	}
	before := h.issuer.Counters()
	h.markJob(job.Name, batchv1.JobComplete)
	testenv.Eventually(h.t, 20*time.Second, "revoked", func() bool { return conditionTrue(h.getJob(job.Name), jobtokenv1alpha1.ConditionRevoked) })
	if h.issuer.Active(jobAccess) || h.issuer.Active(jobRefresh) {
		t.Errorf("the job's tokens are still active")
	}
	if got := h.issuer.Counters().FamiliesRevokedByReason[devissuer.ReasonRevoked] - before.FamiliesRevokedByReason[devissuer.ReasonRevoked]; got != 1 {
		t.Errorf("the issuer revoked %d families at the end, want the job's one", got)
	}
	if !h.issuer.Active(userAccess) {
		t.Errorf("revoking the job's tokens revoked the submitter's own token")
	}
	h.assertNoReuse()
}

// tokenRequest calls the issuer's token endpoint as the job's client and returns the
// answer's access and refresh tokens (empty when refused).
func tokenRequest(t *testing.T, h *harness, form url.Values) (access, refresh string) {
	t.Helper()
	return tokenRequestAs(t, h, clientID, clientSecret, form)
}

// tokenRequestAs asks the harness issuer for tokens as the given OAuth client; a refusal
// gives empty tokens.
func tokenRequestAs(t *testing.T, h *harness, client, secret string, form url.Values) (access, refresh string) {
	t.Helper()
	access, refresh, err := testenv.TokenRequest(h.ctx, h.issuer.URL(), client, secret, form)
	if err != nil {
		t.Logf("token request: %v", err)
	}
	return access, refresh
}

// refreshAtIssuer redeems a refresh token directly, as a lost request did.
func refreshAtIssuer(t *testing.T, h *harness, refresh string) string {
	t.Helper()
	_, rt := tokenRequest(t, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	return rt
}

// passwordGrant logs the user in, as a submitter handing over a token would.
func passwordGrant(t *testing.T, h *harness) (access, refresh string) {
	t.Helper()
	access, refresh = tokenRequest(t, h, url.Values{"grant_type": {"password"}, "username": {userName}, "password": {userPassword}})
	if access == "" || refresh == "" {
		t.Fatal("the password grant gave no tokens")
	}
	return access, refresh
}

// A dead chain with a grant that cannot mint again is reported, not retried forever.
func TestCredentialsLost(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	_, handed := passwordGrant(t, h)
	h.must(env.Client.Create(h.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "handover"},
		Data:       map[string][]byte{"refresh_token": []byte(handed)},
	}))
	job := h.importJob("lost", jobtokenv1alpha1.GrantRefreshToken)
	job.Spec.Credentials.RefreshToken = &jobtokenv1alpha1.RefreshTokenGrant{SecretRef: jobtokenv1alpha1.SecretKeySelector{Name: "handover"}}
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 20*time.Second, "running", func() bool { return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning })

	// The user's logout ends the session the handed-over chain belongs to.
	if n := h.issuer.LogoutUser(userName); n == 0 {
		t.Fatal("the logout ended no session: the test would prove nothing")
	}
	testenv.Eventually(h.t, 20*time.Second, "CredentialsLost", func() bool {
		return conditionTrue(h.getJob(job.Name), jobtokenv1alpha1.ConditionCredentialsLost)
	})
	requests := tokenRequestCount(h.issuer.Counters())
	time.Sleep(5 * time.Second)
	if after := tokenRequestCount(h.issuer.Counters()); after != requests {
		t.Errorf("%d more token requests after the credentials were lost: a dead chain must not be retried", after-requests)
	}
	job = h.getJob(job.Name)
	c := meta.FindStatusCondition(job.Status.Conditions, jobtokenv1alpha1.ConditionCredentialsLost)
	if c.Reason != jobtokenv1alpha1.ReasonDeadChain || !strings.Contains(c.Message, "RefreshToken") || conditionTrue(job, jobtokenv1alpha1.ConditionReady) {
		t.Errorf("unexpected status: %+v", job.Status.Conditions)
	}
	if !hasEvent(h.events(job.Name), EventCredentialsLost) {
		t.Errorf("no CredentialsLost event")
	}
	h.assertNoReuse()
}

// The FOLIO dialect end to end: a ClusterTokenIssuer on the issuer's /authn endpoints,
// cookies rotated on refresh, logout at the end.
func TestFOLIOIssuer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.startManager(managerOptions{})
	cti := &jobtokenv1alpha1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "folio-" + h.ns},
		Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
			TokenIssuerSpec: jobtokenv1alpha1.TokenIssuerSpec{InsecureAllowPlainHTTP: true, FOLIO: &jobtokenv1alpha1.FOLIOIssuerSpec{URL: h.issuer.URL(), Tenant: "diku"}},
			Allowed:         allowNamespace(h.ns, jobtokenv1alpha1.GrantPassword),
		},
	}
	h.must(env.Client.Create(h.ctx, cti))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	job := h.importJob("folio", jobtokenv1alpha1.GrantPassword)
	job.Spec.IssuerRef = testenv.OnClusterTokenIssuer(cti.Name)
	h.must(env.Client.Create(h.ctx, job))
	testenv.Eventually(h.t, 30*time.Second, "2 rotations through /authn/refresh", func() bool { return h.getJob(job.Name).Status.Rotations >= 2 })
	ws, err := h.workerSecret(job)
	h.must(err)
	if !resourceAccepts(t, h, string(ws.Data[jobtokenv1alpha1.KeyAccessToken])) {
		t.Errorf("the FOLIO access token is refused by the protected resource")
	}
	if got := h.issuer.Counters().TokenRequests[devissuer.GrantKeyFolioRefresh][devissuer.ResultOK]; got < 2 {
		t.Errorf("the issuer saw %d FOLIO refreshes, want at least 2", got)
	}
	// Just before the end the newest pair is alive; the refresh token outlives the test
	// unless the logout ends it.
	issued := h.issuer.Issued()
	if !h.issuer.Active(last(issued.Access)) || !h.issuer.Active(last(issued.Refresh)) {
		t.Fatal("the newest FOLIO pair is not active before the end: the logout check would prove nothing")
	}
	before := h.issuer.Counters()
	h.markJob(job.Name, batchv1.JobComplete)
	testenv.Eventually(h.t, 20*time.Second, "revoked", func() bool { return conditionTrue(h.getJob(job.Name), jobtokenv1alpha1.ConditionRevoked) })
	h.assertRevoked(before, devissuer.ReasonLogout)
	h.assertNoReuse()
}
