package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jobtoken/jobtoken/internal/harness"
)

// Failure is one target a run missed.
type Failure string

// Failures lists the missed targets (empty: every target met).
func (r *Result) Failures() []Failure {
	var f []Failure
	add := func(bad bool, format string, args ...any) {
		if bad {
			f = append(f, Failure(fmt.Sprintf(format, args...)))
		}
	}
	common := func(name string, c Common, misses bool) {
		if misses {
			add(c.Misses > 0, "%s: %d deadline misses (worst %s late)", name, c.Misses, c.MaxLate)
		}
		add(c.RefreshReuse > 0, "%s: the issuer saw %d refresh-token replays", name, c.RefreshReuse)
		add(c.PresentedTwice > 0, "%s: refresh tokens were presented %d times after their redemption", name, c.PresentedTwice)
		add(c.LostChains > 0, "%s: %d lost chains", name, c.LostChains)
		add(c.Revoked != c.Jobs, "%s: %d of %d ImportJobs revoked", name, c.Revoked, c.Jobs)
		add(c.HeldActive > 0, "%s: %d tokens the operator held still active at the issuer after revocation", name, c.HeldActive)
		add(c.HeldRefreshActiveBefore < c.Jobs, "%s: only %d of %d jobs' refresh tokens were active just before the end, so their revocation proves little", name, c.HeldRefreshActiveBefore, c.Jobs)
		add(c.HeldChecked < c.Jobs, "%s: only %d held tokens were checked after the revocation, want at least one per job", name, c.HeldChecked)
		add(c.VaultLeft > 0, "%s: %d vault Secrets left", name, c.VaultLeft)
	}
	if s := r.Soak; s != nil {
		common("soak", s.Common, true)
	}
	if o := r.Outage; o != nil {
		common("outage", o.Common, true)
		add(o.RequestsPerJob > o.RequestsPerJobBound, "outage: %.1f token requests per job during the outage, bound %.0f", o.RequestsPerJob, o.RequestsPerJobBound)
		add(!o.RecoveredAll, "outage: not every job recovered within 5 minutes")
		add(o.Dropped == 0, "outage: no refresh was committed and dropped, so the lost-answer path was not exercised")
		// Nothing is killed in the outage: every family the issuer minted is one the operator
		// held, current or replaced after a dropped answer, and the end revokes them all.
		add(o.ActiveFamilies > 0, "outage: %d token families still alive at the issuer after the end (chains replaced after the dropped answers not revoked)", o.ActiveFamilies)
		// At the quiet point every refresh the issuer answered is a persisted generation
		// (those not made by a re-mint), and the answers it dropped are the ones the
		// scenario asked for: nothing was refreshed behind the stored chains' back.
		add(o.RefreshesOK != o.Generations-o.Remints, "outage: the issuer answered %d refreshes, but generations %d - re-mints %d = %d",
			o.RefreshesOK, o.Generations, o.Remints, o.Generations-o.Remints)
		add(o.RefreshesDropped != o.Dropped, "outage: the issuer dropped %d refresh answers by the end, %d during the faults", o.RefreshesDropped, o.Dropped)
	}
	if p := r.Replicas; p != nil {
		common("replicas", p.Common, true)
		for _, kind := range slices.Sorted(maps.Keys(p.RoundsBy)) {
			add(p.FailoversBy[kind] < p.RoundsBy[kind], "replicas: %d of %d %s rounds failed over to the other replica", p.FailoversBy[kind], p.RoundsBy[kind], kind)
		}
		add(len(p.RoundsBy) < 3 && r.Options.ReplicaRounds >= 3, "replicas: only %d kinds of disturbance ran, want SIGTERM, SIGKILL and SIGSTOP", len(p.RoundsBy))
	}
	return f
}

func yes(ok bool) string {
	if ok {
		return harness.Met
	}
	return harness.Missed
}

// Markdown renders the run as the chaos section of docs/benchmarks.md.
func (r *Result) Markdown(command string) string {
	o := r.Options
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Chaos")
	w("")
	w("- Command: `%s`", command)
	w("- Run: %s, %s in all", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	w("- Machine: %s", r.Machine)
	w("- Setup: the manager is the cmd/manager binary in child processes (production intervals); development issuer in-process; Password grant; rotation at %s of the lifetime (0.1 jitter), propagation budget %s. A deadline miss is a worker Secret still holding a token at its expires_at minus the budget.",
		o.Fraction, o.PropagationBudget)
	w("")
	w("| Scenario | Measure | Result | Target | |")
	w("| --- | --- | --- | --- | --- |")
	common := func(name string, c Common, missTarget bool) {
		missT, missV := "0", yes(c.Misses == 0)
		if !missTarget {
			missT, missV = "", ""
		}
		w("| %s | Deadline misses (worst lateness) / tokens served past expires_at | %d (%s) / %d | %s | %s |", name, c.Misses, c.MaxLate.Round(10*time.Millisecond), c.Expired, missT, missV)
		w("| %s | Refresh-token replays at the issuer (its reuse counter) / refresh tokens presented again after redemption | %d / %d | 0 / 0 | %s |", name, c.RefreshReuse, c.PresentedTwice, yes(c.RefreshReuse == 0 && c.PresentedTwice == 0))
		w("| %s | Lost chains (refresh token dead at the quiet check, CredentialsLost or Stalled) | %d of %d | 0 | %s |", name, c.LostChains, c.Jobs, yes(c.LostChains == 0))
		w("| %s | At a quiet point (managers frozen, no request in flight): issuer refreshes / generations advanced / re-mints with the grant | %d / %d / %d | | |", name, c.RefreshesOK, c.Generations, c.Remints)
		w("| %s | Revocation at the end: ImportJobs Revoked / held tokens still active at the issuer (of those checked: refresh tokens active just before, and access tokens not yet expired) / vault Secrets left | %d of %d / %d of %d / %d | all / 0 / 0 | %s |", name, c.Revoked, c.Jobs,
			c.HeldActive, c.HeldChecked, c.VaultLeft, yes(c.Revoked == c.Jobs && c.HeldActive == 0 && c.VaultLeft == 0 && c.HeldChecked >= c.Jobs))
		w("| %s | Token families still alive at the issuer after the end (minted by requests whose answer no process read) | %d | | |", name, c.ActiveFamilies)
	}
	if s := r.Soak; s != nil {
		w("| soak | %d jobs, access-token TTL %s, manager SIGKILLed every %s and restarted at once | %d kills in %s | | |", s.Jobs, o.SoakTTL, o.KillEvery, s.Kills, s.Duration.Round(time.Second))
		w("| soak | Before the first kill: every job created at once, until each had rotated once (%s): deadline misses of that wave | %d | | |", s.WaveSettle.Round(100*time.Millisecond), s.WaveMisses)
		common("soak", s.Common, true)
	}
	if x := r.Outage; x != nil {
		w("| outage | %d jobs, TTL %s: %d refreshes committed and dropped (every other token request failing) for %s, then the issuer down for %d TTLs | outage %s | | |",
			x.Jobs, o.OutageTTL, x.Dropped, x.Dying.Round(time.Millisecond), o.OutageTTLs, x.Outage.Round(time.Second))
		w("| outage | Token requests per job during the outage (peak /s) | %.1f (peak %d/s) | ≤ %.0f (1 + log2 of the TTL in s, then one per half TTL, + rotation and recovery) | %s |", x.RequestsPerJob, x.PeakRate, x.RequestsPerJobBound, yes(x.RequestsPerJob <= x.RequestsPerJobBound))
		w("| outage | Automatic recovery: every job holds a fresh, unexpired token (peak requests/s meanwhile) | after %s (peak %d/s) | automatic | %s |", x.RecoveryTime.Round(100*time.Millisecond), x.RecoverPeak, yes(x.RecoveredAll))
		w("| outage | After the recovery: most rotations within one second | %d | | |", x.SteadyPeak)
		common("outage (after recovery)", x.Common, true)
	}
	if p := r.Replicas; p != nil {
		w("| replicas | %d jobs, TTL %s, two managers with leader election (lease 4s); rounds: %s | %d failovers in %d rounds | one per round | %s |", p.Jobs, o.ReplicaTTL, strings.Join(p.Rounds, "; "), p.Failovers, len(p.Rounds), yes(p.Failovers == len(p.Rounds) && len(p.Rounds) > 0))
		w("| replicas | Exactly one refresh per generation: refresh tokens presented again after redemption | %d | 0 | %s |", p.PresentedTwice, yes(p.PresentedTwice == 0 && p.RefreshReuse == 0))
		common("replicas", p.Common, true)
	}
	return b.String()
}
