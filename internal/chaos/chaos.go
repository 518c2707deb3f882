// Package chaos runs the operator through failures against the real kube-apiserver and
// etcd (bin/k8s), with the manager binary (cmd/manager) as child processes and the
// development issuer in-process:
//
//   - soak: the manager is killed with SIGKILL every few seconds and restarted while
//     jobs rotate short-lived tokens; then tokens served past the deadline, refresh-token
//     replays, lost chains and revocation completeness are counted;
//   - outage: the issuer commits refreshes and drops the answers, then is down for three
//     token lifetimes: issuer requests per job (no storm) and automatic recovery;
//   - replicas: two managers with leader election while the leader is stopped gracefully,
//     killed and frozen in turn: exactly one refresh per token generation.
//
// `make chaos` runs the long version (cmd/chaos); TestChaosShort a short one in `make test`.
// Token bytes are never printed.
package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/harness"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
)

// Options shape a chaos run.
type Options struct {
	// Scenarios to run, in order: "soak", "outage", "replicas" (default all).
	Scenarios []string

	// Soak: Jobs with access-token TTL SoakTTL; the manager is SIGKILLed every KillEvery.
	Jobs          int
	SoakTTL       time.Duration
	SoakDuration  time.Duration
	KillEvery     time.Duration
	OutageJobs    int
	OutageTTL     time.Duration
	OutageTTLs    int
	ReplicaJobs   int
	ReplicaTTL    time.Duration
	ReplicaPeriod time.Duration
	ReplicaRounds int

	// PropagationBudget and Fraction of the ImportJobs' rotation.
	PropagationBudget time.Duration
	Fraction          string

	// ManagerBin is the cmd/manager binary; WorkDir holds logs and the kubeconfig.
	ManagerBin string
	WorkDir    string
	Out        io.Writer
}

// Defaults fills zero fields with the long run's values.
func (o *Options) Defaults() {
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{"soak", "outage", "replicas"}
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Jobs, 200)
	defD(&o.SoakTTL, 10*time.Second)
	defD(&o.SoakDuration, 10*time.Minute)
	defD(&o.KillEvery, 10*time.Second)
	def(&o.OutageJobs, o.Jobs)
	defD(&o.OutageTTL, 10*time.Second)
	def(&o.OutageTTLs, 3)
	def(&o.ReplicaJobs, o.Jobs)
	defD(&o.ReplicaTTL, 20*time.Second)
	defD(&o.ReplicaPeriod, 15*time.Second)
	def(&o.ReplicaRounds, 9)
	defD(&o.PropagationBudget, 2*time.Second)
	if o.Fraction == "" {
		o.Fraction = "0.5"
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
}

// Result is every scenario's outcome.
type Result struct {
	Options  Options
	Machine  harness.Machine
	Started  time.Time
	Elapsed  time.Duration
	Soak     *Soak
	Outage   *Outage
	Replicas *Replicas
}

// Common is what every scenario counts.
type Common struct {
	Jobs int
	// Misses: worker Secrets still holding a token at expires_at − budget; Expired: past
	// expires_at itself.
	Misses, Expired int
	MaxLate         time.Duration
	// RefreshReuse is the issuer's reuse counter; PresentedTwice counts refresh tokens
	// presented again after the issuer redeemed them (seen at the issuer's door; a retry
	// after a 503 is not counted).
	RefreshReuse, PresentedTwice int64
	// RefreshesOK and RefreshesDropped are the issuer's refreshes answered and those it
	// committed and then dropped the answer of; PasswordOK its Password grants answered.
	RefreshesOK, RefreshesDropped, PasswordOK int64
	// Generations is the sum over jobs of token generations after the first mint.
	Generations int64
	// LostChains: jobs whose refresh chain was dead at the quiet check (the vault's
	// refresh token not active at the issuer) or that report CredentialsLost or Stalled.
	LostChains int
	// Revoked: ImportJobs with Revoked=True at the end; HeldActive the tokens the operator
	// held (vault refresh and access tokens) still active at the issuer after that;
	// ActiveFamilies every live token family at the issuer after the end: chains replaced
	// after a lost refresh answer are revoked with the job (the development issuer ends a
	// family on any of its tokens), so what is left are families minted by requests
	// whose answer no process read (a manager killed during a mint), unknown to the
	// operator;
	// VaultLeft the vault Secrets left. HeldRefreshActiveBefore counts the held refresh
	// tokens active at the issuer just before the end (each job's, so that "inactive
	// after" proves the revocation); HeldChecked the held tokens not expired on their own
	// when checked after the revocation.
	Revoked                 int
	HeldActive, HeldChecked int
	HeldRefreshActiveBefore int
	ActiveFamilies          int64
	VaultLeft               int
	Remints                 int64
}

// Soak is the kill -9 soak.
type Soak struct {
	Common
	Duration time.Duration
	Kills    int
	// WaveMisses are the deadline misses while every job was created at once and until
	// each had rotated once (WaveSettle after the creation began), before the first kill.
	WaveMisses int
	WaveSettle time.Duration
}

// Outage is the issuer outage.
type Outage struct {
	Common
	Outage, Dying         time.Duration
	Dropped               int64
	RequestsPerJob        float64
	RequestsPerJobBound   float64
	PeakRate, RecoverPeak int64
	RecoveryTime          time.Duration
	RecoveredAll          bool
	// SteadyPeak is the most rotations seen within one second after the recovery.
	SteadyPeak int
}

// Replicas is the two-manager run.
type Replicas struct {
	Common
	Rounds    []string
	Failovers int
	// RoundsBy and FailoversBy count the rounds, and those in which the other replica
	// took the lease over, by kind of disturbance.
	RoundsBy, FailoversBy map[string]int
}

type runner struct {
	o     Options
	cl    *harness.Cluster
	start time.Time
}

func (r *runner) say(format string, args ...any) {
	_, _ = fmt.Fprintf(r.o.Out, "[%6s] %s\n", time.Since(r.start).Round(time.Second), fmt.Sprintf(format, args...))
}

// Run performs the scenarios. It starts and stops everything it needs.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.Defaults()
	res := &Result{Options: o, Machine: harness.DescribeMachine(), Started: time.Now()}
	r := &runner{o: o, start: res.Started}
	if o.ManagerBin == "" {
		return nil, fmt.Errorf("chaos: Options.ManagerBin (cmd/manager built) is required")
	}
	r.say("starting kube-apiserver and etcd (bin/k8s)")
	cl, err := harness.StartCluster(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cl.Stop() }()
	r.cl = cl
	for _, name := range o.Scenarios {
		switch name {
		case "soak":
			if res.Soak, err = r.soak(ctx); err != nil {
				return nil, fmt.Errorf("soak: %w", err)
			}
		case "outage":
			if res.Outage, err = r.outage(ctx); err != nil {
				return nil, fmt.Errorf("outage: %w", err)
			}
		case "replicas":
			if res.Replicas, err = r.replicas(ctx); err != nil {
				return nil, fmt.Errorf("replicas: %w", err)
			}
		default:
			return nil, fmt.Errorf("unknown scenario %q", name)
		}
	}
	res.Elapsed = time.Since(res.Started)
	return res, nil
}

// scenario is one scenario's issuer, jobs and managers.
type scenario struct {
	r       *runner
	name    string
	iss     *harness.Issuer
	fx      *harness.Fixture
	tracker *harness.Tracker
	keys    []client.ObjectKey
	ttl     time.Duration
	stopTr  context.CancelFunc
	procs   []*testenv.Proc
	n       int
	// kills are the times the manager was SIGKILLed, for the timeline.
	kills []time.Time
}

func (r *runner) newScenario(ctx context.Context, name string, jobs int, ttl time.Duration) (*scenario, error) {
	iss, err := harness.StartIssuer(devissuer.Config{
		AccessTokenTTL: ttl, RefreshTokenTTL: 10 * time.Minute,
		Clients: map[string]string{harness.ClientID: harness.ClientSecret},
		Users:   map[string]string{harness.UserName: harness.UserPassword},
	})
	if err != nil {
		return nil, err
	}
	fx, err := harness.SetupFixture(ctx, r.cl.Client, "chaos-"+name, 4, iss.URL)
	if err != nil {
		_ = iss.Close()
		return nil, err
	}
	tctx, cancel := context.WithCancel(ctx)
	tr, err := harness.NewTracker(tctx, r.cl.Clientset, r.o.PropagationBudget, "chaos-"+name+"-")
	if err != nil {
		cancel()
		_ = iss.Close()
		return nil, err
	}
	return &scenario{r: r, name: name, iss: iss, fx: fx, tracker: tr, ttl: ttl, stopTr: cancel, n: jobs}, nil
}

func (s *scenario) close() {
	for _, p := range s.procs {
		if err := p.Stop(15 * time.Second); err != nil {
			s.r.say("  %v", err)
		}
	}
	s.stopTr()
	_ = s.iss.Close()
}

// managerArgs are cmd/manager's flags for this scenario.
func (s *scenario) managerArgs(leader bool) []string {
	args := []string{
		"--kubeconfig", s.r.cl.Kubeconfig, "--vault-namespace", s.fx.VaultNamespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
	}
	if leader {
		args = append(args, "--leader-elect=true", "--leader-election-lease-duration=4s",
			"--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms")
	} else {
		args = append(args, "--leader-elect=false")
	}
	return args
}

func (s *scenario) startManager(name string, leader bool) (*testenv.Proc, error) {
	p, err := testenv.StartProc(name, s.r.o.ManagerBin, s.managerArgs(leader), filepath.Join(s.r.o.WorkDir, s.name+"-"+name+".log"))
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

// createJobs creates the jobs and waits until each holds a credential.
func (s *scenario) createJobs(ctx context.Context) error {
	spec := harness.JobSpec{PropagationBudget: s.r.o.PropagationBudget, Fraction: s.r.o.Fraction}
	s.keys = make([]client.ObjectKey, s.n)
	if err := harness.WaitIssuerReady(ctx, s.r.cl.Client, s.fx.IssuerName, time.Minute); err != nil {
		return fmt.Errorf("issuer not Ready: %w", err)
	}
	if err := harness.ForEach(ctx, s.n, 8, func(i int) error {
		job := s.fx.ImportJob(i, spec)
		s.keys[i] = client.ObjectKeyFromObject(job)
		s.tracker.Created(job.Namespace, job.Name, time.Now())
		return s.r.cl.Client.Create(ctx, job)
	}); err != nil {
		return err
	}
	if err := testenv.Poll(ctx, 3*time.Minute, 200*time.Millisecond, func() bool { return s.tracker.ReadyCount() >= s.n }); err != nil {
		return fmt.Errorf("only %d of %d jobs got a credential: %w", s.tracker.ReadyCount(), s.n, err)
	}
	return nil
}

// everyJobRotatedSince tells whether every job of the scenario got a new token after at.
func (s *scenario) everyJobRotatedSince(at time.Time) bool {
	n, _ := s.tracker.RotatedSince(at)
	return n >= s.n
}

// vaults lists the scenario's vault Secrets.
func (s *scenario) vaults(ctx context.Context) ([]corev1.Secret, error) {
	list := &corev1.SecretList{}
	err := s.r.cl.Client.List(ctx, list, client.InNamespace(s.fx.VaultNamespace),
		client.MatchingLabels{jobtokenv1alpha1.LabelRole: jobtokenv1alpha1.RoleVault})
	return list.Items, err
}

// lostChains counts jobs whose chain is dead: the vault's refresh token not active at
// the issuer (a rotation racing the check is given three looks), or a CredentialsLost or
// Stalled condition.
func (s *scenario) lostChains(ctx context.Context) (int, error) {
	var suspects map[string]bool
	for attempt := range 3 {
		vs, err := s.vaults(ctx)
		if err != nil {
			return 0, err
		}
		next := map[string]bool{}
		for _, v := range vs {
			key := v.Labels[jobtokenv1alpha1.LabelImportJobNamespace] + "/" + v.Labels[jobtokenv1alpha1.LabelImportJobName]
			if attempt > 0 && !suspects[key] {
				continue
			}
			if !s.iss.Active(string(v.Data[tokenchain.KeyRefreshToken])) {
				next[key] = true
			}
		}
		suspects = next
		if len(suspects) == 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	lost := len(suspects)
	for _, k := range s.keys {
		job := &jobtokenv1alpha1.ImportJob{}
		if err := s.r.cl.Client.Get(ctx, k, job); err != nil {
			return 0, err
		}
		if suspects[k.String()] {
			continue
		}
		if meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionCredentialsLost) ||
			meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionStalled) {
			lost++
		}
	}
	return lost, nil
}

// quietSnapshot freezes every running manager (SIGSTOP) at a moment when no stored chain
// has a request in flight, and reads the generations and the issuer's counters there, so
// that the two can be compared: no rotation can land between the two reads.
func (s *scenario) quietSnapshot(ctx context.Context, c *Common) ([]heldToken, error) {
	var live []*testenv.Proc
	for _, p := range s.procs {
		if !p.Exited() {
			live = append(live, p)
		}
	}
	resume := func() {
		for _, p := range live {
			_ = p.Signal(syscall.SIGCONT)
		}
	}
	for attempt := 0; ; attempt++ {
		for _, p := range live {
			_ = p.Signal(syscall.SIGSTOP)
		}
		vs, err := s.vaults(ctx)
		if err != nil {
			resume()
			return nil, err
		}
		inFlight := 0
		var gens int64
		for _, v := range vs {
			if len(v.Data[tokenchain.KeyInFlight]) > 0 {
				inFlight++
			}
			n, _ := strconv.ParseInt(string(v.Data[tokenchain.KeyGeneration]), 10, 64)
			gens += max(n-1, 0)
		}
		if inFlight == 0 || attempt == 50 {
			ic := s.iss.Counters()
			held := s.heldTokens(vs)
			for _, h := range held {
				if h.refresh && s.iss.Active(h.token) {
					c.HeldRefreshActiveBefore++
				}
			}
			resume()
			if inFlight > 0 {
				return nil, fmt.Errorf("no quiet point: %d chains had a request in flight at each of %d looks", inFlight, attempt+1)
			}
			c.Generations = gens
			c.RefreshesOK = ic.TokenRequests[devissuer.GrantKeyRefreshToken][devissuer.ResultOK]
			c.RefreshesDropped = ic.TokenRequests[devissuer.GrantKeyRefreshToken][devissuer.ResultDropped]
			c.PasswordOK = ic.TokenRequests[devissuer.GrantKeyPassword][devissuer.ResultOK]
			c.Remints = c.PasswordOK - int64(s.n)
			return held, nil
		}
		resume()
		if err := testenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// heldTokens lists the refresh and access tokens of the stored chains.
func (s *scenario) heldTokens(vs []corev1.Secret) []heldToken {
	var held []heldToken
	for _, v := range vs {
		if t := string(v.Data[tokenchain.KeyRefreshToken]); t != "" {
			held = append(held, heldToken{token: t, refresh: true})
		}
		if t := string(v.Data[tokenchain.KeyAccessToken]); t != "" {
			exp, _ := time.Parse(time.RFC3339Nano, string(v.Data["expires_at"]))
			held = append(held, heldToken{token: t, expiresAt: exp})
		}
	}
	return held
}

// heldToken is a token the operator held at the end, with the time it expires.
type heldToken struct {
	token     string
	refresh   bool
	expiresAt time.Time
}

// finish fills the common counters: chains, the quiet snapshot, then every Job marked
// Complete, then revocation at the issuer of the tokens the operator held.
func (s *scenario) finish(ctx context.Context, c *Common, from, to time.Time) error {
	c.Jobs = s.n
	w := s.tracker.Between(from, to)
	c.Misses, c.Expired = len(w.Misses), w.Expired
	for _, m := range w.Misses {
		c.MaxLate = max(c.MaxLate, m.Late)
	}
	var err error
	if c.LostChains, err = s.lostChains(ctx); err != nil {
		return err
	}
	// The tokens the operator holds at the quiet point (kept in memory only, never
	// printed). Each refresh token is active there; once the jobs are revoked, each held
	// token that has not expired on its own by then must be inactive. Refresh tokens live
	// for minutes, so they always count.
	held, err := s.quietSnapshot(ctx, c)
	if err != nil {
		return err
	}
	s.stopTr()
	s.r.say("  marking every Job Complete; waiting for revocation")
	if err := harness.MarkJobsComplete(ctx, s.r.cl.Client, s.keys, 8); err != nil {
		return err
	}
	_ = testenv.Poll(ctx, 3*time.Minute, 500*time.Millisecond, func() bool {
		c.Revoked = 0
		for _, k := range s.keys {
			job := &jobtokenv1alpha1.ImportJob{}
			if s.r.cl.Client.Get(ctx, k, job) == nil && meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) {
				c.Revoked++
			}
		}
		return c.Revoked == s.n
	})
	s.sayUnrevoked(ctx)
	_ = testenv.Poll(ctx, 30*time.Second, 500*time.Millisecond, func() bool {
		vs, err := s.vaults(ctx)
		c.VaultLeft = len(vs)
		return err == nil && len(vs) == 0
	})
	now := time.Now()
	for _, h := range held {
		if !h.refresh && !now.Before(h.expiresAt) {
			continue // expired on its own: inactive whatever the revocation did
		}
		c.HeldChecked++
		if s.iss.Active(h.token) {
			c.HeldActive++
		}
	}
	ic := s.iss.Counters()
	tr := s.iss.Traffic()
	c.ActiveFamilies = ic.ActiveFamilies
	c.RefreshReuse = ic.RefreshReuse
	c.PresentedTwice = tr.Replays
	// The finished ImportJobs are deleted so that later scenarios' managers do not cache them.
	for _, ns := range s.fx.Namespaces {
		_ = s.r.cl.Client.DeleteAllOf(ctx, &jobtokenv1alpha1.ImportJob{}, client.InNamespace(ns))
	}
	return nil
}

// soak kills the manager with SIGKILL every KillEvery and restarts it at once.
func (r *runner) soak(ctx context.Context) (*Soak, error) {
	o := r.o
	r.say("soak: %d jobs, token TTL %s, budget %s, manager SIGKILLed every %s for %s", o.Jobs, o.SoakTTL, o.PropagationBudget, o.KillEvery, o.SoakDuration)
	s, err := r.newScenario(ctx, "soak", o.Jobs, o.SoakTTL)
	if err != nil {
		return nil, err
	}
	defer s.close()
	p, err := s.startManager("manager", false)
	if err != nil {
		return nil, err
	}
	created := time.Now()
	if err := s.createJobs(ctx); err != nil {
		return nil, err
	}
	// The kills start from a steady state. Creating every job at once is a herd of first
	// credentials (eight writes each) that on two cores can hold back the first rotation
	// of the jobs created first by more than a 10 s token's margin; that wave is the
	// bench's time to first credential, not a kill's effect. Its misses are reported
	// apart (WaveMisses), and the soak begins once every job has rotated after it.
	res := &Soak{}
	readyAt := time.Now()
	if err := testenv.Poll(ctx, 3*o.SoakTTL, 200*time.Millisecond, func() bool { return s.everyJobRotatedSince(readyAt) }); err != nil {
		n, _ := s.tracker.RotatedSince(readyAt)
		return nil, fmt.Errorf("only %d of %d jobs rotated within %s of the last first credential: %w", n, s.n, 3*o.SoakTTL, err)
	}
	from := time.Now()
	res.WaveSettle = from.Sub(created)
	res.WaveMisses = len(s.tracker.Between(created, from).Misses)
	r.say("  every job rotated once %s after the creation began (%d deadline misses meanwhile); killing from now", res.WaveSettle.Round(100*time.Millisecond), res.WaveMisses)
	end := from.Add(o.SoakDuration)
	for time.Now().Before(end) {
		next := time.Now().Add(o.KillEvery)
		if next.After(end) {
			next = end
		}
		if err := testenv.Sleep(ctx, time.Until(next)); err != nil {
			return nil, err
		}
		if !time.Now().Before(end) {
			break
		}
		p.Kill()
		res.Kills++
		s.kills = append(s.kills, time.Now())
		if p, err = s.startManager("manager", false); err != nil {
			return nil, err
		}
		if res.Kills%6 == 0 {
			w := s.tracker.Between(from, time.Now())
			r.say("  %d kills, %d deadline misses so far, issuer reuse %d", res.Kills, len(w.Misses), s.iss.Counters().RefreshReuse)
		}
	}
	res.Duration = time.Since(from)
	if err := s.writeTimeline(from); err != nil {
		return nil, err
	}
	// Two token lifetimes without kills before the end, not "until every job rotated after
	// the last kill": Jobs completed within a rotation period of a SIGKILL restart have been
	// left unrevoked (2 of 50 after 3 minutes), which the soak does not set out to test.
	settle := 2 * o.SoakTTL
	r.say("  %d kills; settling for %s without kills", res.Kills, settle)
	if err := testenv.Sleep(ctx, settle); err != nil {
		return nil, err
	}
	if err := s.finish(ctx, &res.Common, from, time.Now()); err != nil {
		return nil, err
	}
	r.say("  misses %d, reuse %d, double refreshes %d, lost chains %d, revoked %d/%d, active families %d",
		res.Misses, res.RefreshReuse, res.PresentedTwice, res.LostChains, res.Revoked, res.Jobs, res.ActiveFamilies)
	return res, nil
}

// outage: refreshes committed and dropped (with every other token request failing), then
// the issuer down for OutageTTLs token lifetimes, then back.
func (r *runner) outage(ctx context.Context) (*Outage, error) {
	o := r.o
	down := time.Duration(o.OutageTTLs) * o.OutageTTL
	r.say("outage: %d jobs, token TTL %s; commit-then-drop faults, then the issuer down for %s", o.OutageJobs, o.OutageTTL, down)
	s, err := r.newScenario(ctx, "outage", o.OutageJobs, o.OutageTTL)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if _, err := s.startManager("manager", false); err != nil {
		return nil, err
	}
	if err := s.createJobs(ctx); err != nil {
		return nil, err
	}
	if err := testenv.Sleep(ctx, o.OutageTTL); err != nil {
		return nil, err
	}
	res := &Outage{}
	from := time.Now()
	drops := max(o.OutageJobs/10, 1)
	s.iss.SetFaults(devissuer.Faults{CommitThenDrop: drops, ErrorRate: 0.5})
	_ = testenv.Poll(ctx, o.OutageTTL, 20*time.Millisecond, func() bool { return s.iss.CurrentFaults().CommitThenDrop == 0 })
	// Counted by the issuer, not from the fault budget: a budget that was never applied
	// must not read as drops that happened.
	res.Dropped = s.iss.Counters().TokenRequests[devissuer.GrantKeyRefreshToken][devissuer.ResultDropped]
	s.iss.SetFaults(devissuer.Faults{Down: true})
	downAt := time.Now()
	res.Dying = downAt.Sub(from)
	r.say("  %d refreshes committed and dropped in %s; issuer down", res.Dropped, res.Dying.Round(time.Millisecond))
	if err := testenv.Sleep(ctx, down); err != nil {
		return nil, err
	}
	s.iss.SetFaults(devissuer.Faults{})
	upAt := time.Now()
	res.Outage = upAt.Sub(from)
	outageReqs := s.iss.TokenRequestsBetween(from, upAt.Add(-time.Second))
	res.RequestsPerJob = float64(outageReqs) / float64(o.OutageJobs)
	// Exponential backoff from 1s (each wait at least half its step) until the step
	// reaches the token lifetime, which caps it once the token has expired: at most
	// 1 + log2(lifetime) attempts to get there, then one per half lifetime; plus the
	// scheduled rotation and one recovery after a dropped answer.
	res.RequestsPerJobBound = 3 + log2(o.OutageTTL.Seconds()) + 2*res.Outage.Seconds()/o.OutageTTL.Seconds()
	res.PeakRate = s.iss.PeakTokenRate(from, upAt)
	r.say("  issuer back after %s: %.1f token requests per job during the outage (peak %d/s)", res.Outage.Round(time.Second), res.RequestsPerJob, res.PeakRate)
	err = testenv.Poll(ctx, 5*time.Minute, 100*time.Millisecond, func() bool {
		return s.everyJobRotatedSince(upAt) && s.tracker.ValidCount(time.Now()) >= o.OutageJobs
	})
	res.RecoveredAll = err == nil
	res.RecoveryTime = time.Since(upAt)
	res.RecoverPeak = s.iss.PeakTokenRate(upAt, time.Now())
	r.say("  every job held a fresh token %s after the issuer came back (peak %d requests/s)", res.RecoveryTime.Round(100*time.Millisecond), res.RecoverPeak)
	// Misses during the outage are unavoidable: they are counted after recovery only, over
	// the next rotation of every job (where a herd of recovered jobs would show), two
	// token lifetimes at the most.
	measuredFrom := upAt.Add(res.RecoveryTime)
	_ = testenv.Poll(ctx, 2*o.OutageTTL, 200*time.Millisecond, func() bool { return s.everyJobRotatedSince(measuredFrom) })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	measuredTo := time.Now()
	after := s.tracker.Rotations(measuredFrom, measuredTo)
	res.SteadyPeak = harness.PeakPerSecond(after)
	r.say("  after recovery: %d rotations, at most %d within one second", len(after), res.SteadyPeak)
	if err := s.writeTimeline(upAt); err != nil {
		return nil, err
	}
	if err := s.finish(ctx, &res.Common, measuredFrom, measuredTo); err != nil {
		return nil, err
	}
	r.say("  reuse %d, replays %d, lost chains %d, revoked %d/%d, live families %d",
		res.RefreshReuse, res.PresentedTwice, res.LostChains, res.Revoked, res.Jobs, res.ActiveFamilies)
	return res, nil
}

// replicas runs two managers with leader election; each round disturbs the leader:
// graceful stop (SIGTERM, the lease is released), SIGKILL (the lease expires), or
// SIGSTOP past the lease (the old leader wakes up after another took over).
func (r *runner) replicas(ctx context.Context) (*Replicas, error) {
	o := r.o
	r.say("replicas: %d jobs, token TTL %s, two managers with leader election (lease 4s), %d rounds every %s",
		o.ReplicaJobs, o.ReplicaTTL, o.ReplicaRounds, o.ReplicaPeriod)
	s, err := r.newScenario(ctx, "replicas", o.ReplicaJobs, o.ReplicaTTL)
	if err != nil {
		return nil, err
	}
	defer s.close()
	procs := map[string]*testenv.Proc{}
	for _, name := range []string{"a", "b"} {
		if procs[name], err = s.startManager(name, true); err != nil {
			return nil, err
		}
	}
	if err := s.createJobs(ctx); err != nil {
		return nil, err
	}
	res := &Replicas{FailoversBy: map[string]int{}, RoundsBy: map[string]int{}}
	from := time.Now()
	actions := []string{"SIGTERM", "SIGKILL", "SIGSTOP"}
	for round := range o.ReplicaRounds {
		if err := testenv.Sleep(ctx, o.ReplicaPeriod); err != nil {
			return nil, err
		}
		leader, err := s.leader(ctx)
		if err != nil {
			return nil, err
		}
		p := procs[leader]
		action := actions[round%len(actions)]
		if p == nil {
			res.Rounds = append(res.Rounds, action+": no leader found")
			res.RoundsBy[action]++
			continue
		}
		switch action {
		case "SIGTERM":
			if err := p.Stop(20 * time.Second); err != nil {
				r.say("  %v", err)
			}
		case "SIGKILL":
			p.Kill()
		case "SIGSTOP":
			_ = p.Signal(syscall.SIGSTOP)
			// Past the lease: the other replica takes over while this one is frozen.
			_ = testenv.Sleep(ctx, 6*time.Second)
			_ = p.Signal(syscall.SIGCONT)
			// Woken, it finds its lease lost and exits; a Deployment would restart it.
			select {
			case <-p.Done():
			case <-time.After(20 * time.Second):
				p.Kill()
			}
		}
		// The other replica must take over before the disturbed one comes back: a round in
		// which the old leader simply won the lease again would prove nothing.
		newLeader, werr := s.waitNewLeader(ctx, leader)
		failedOver := werr == nil && newLeader != "" && newLeader != leader
		if failedOver {
			res.Failovers++
			res.FailoversBy[action]++
		}
		if procs[leader], err = s.startManager(leader, true); err != nil {
			return nil, err
		}
		desc := fmt.Sprintf("%s %s → %s", action, leader, newLeader)
		if !failedOver {
			desc = fmt.Sprintf("%s %s → no failover (%v)", action, leader, werr)
		}
		res.Rounds = append(res.Rounds, desc)
		res.RoundsBy[action]++
		r.say("  round %d: %s", len(res.Rounds), desc)
	}
	// The window ends once every job holds a token received after the last disturbance,
	// so that a rotation a failover delayed is in it; two token lifetimes at the most.
	lastRound := time.Now()
	_ = testenv.Poll(ctx, 2*o.ReplicaTTL, 200*time.Millisecond, func() bool { return s.everyJobRotatedSince(lastRound) })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.finish(ctx, &res.Common, from, time.Now()); err != nil {
		return nil, err
	}
	r.say("  refreshes %d for %d generations (+%d re-mints), double refreshes %d, reuse %d, lost chains %d, revoked %d/%d",
		res.RefreshesOK, res.Generations, res.Remints, res.PresentedTwice, res.RefreshReuse, res.LostChains, res.Revoked, res.Jobs)
	return res, nil
}

// leader reads the lease holder and maps it to the replica whose log last acquired it.
func (s *scenario) leader(ctx context.Context) (string, error) {
	var who string
	err := testenv.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() bool {
		who = s.currentLeader()
		return who != ""
	})
	return who, err
}

func (s *scenario) waitNewLeader(ctx context.Context, old string) (string, error) {
	var who string
	err := testenv.Poll(ctx, 30*time.Second, 200*time.Millisecond, func() bool {
		who = s.currentLeader()
		return who != "" && who != old
	})
	if who == "" {
		who = s.currentLeader()
	}
	return who, err
}

// currentLeader is the replica whose latest process (its log's last section) acquired
// the lease and is still running.
func (s *scenario) currentLeader() string {
	for _, name := range []string{"a", "b"} {
		var p *testenv.Proc
		for _, q := range s.procs {
			if q.Name == name {
				p = q
			}
		}
		if p == nil || p.Exited() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.r.o.WorkDir, s.name+"-"+name+".log"))
		if err != nil {
			continue
		}
		log := string(b)
		if i := strings.LastIndex(log, "---- "); i >= 0 {
			log = log[i:]
		}
		if strings.Contains(strings.ToLower(log), "successfully acquired lease") {
			return name
		}
	}
	return ""
}

// writeTimeline writes every rotation the tracker saw (seconds from zero, job, slack
// before its deadline), and the kills, to <workdir>/<scenario>-rotations.csv, to study
// bursts and misses.
func (s *scenario) writeTimeline(zero time.Time) error {
	var b strings.Builder
	b.WriteString("seconds,job,slack_seconds\n")
	for _, rot := range s.tracker.Rotations(time.Time{}, time.Now().Add(time.Hour)) {
		fmt.Fprintf(&b, "%.3f,%s,%.3f\n", rot.At.Sub(zero).Seconds(), rot.Key, rot.Slack.Seconds())
	}
	for _, k := range s.kills {
		fmt.Fprintf(&b, "%.3f,SIGKILL,\n", k.Sub(zero).Seconds())
	}
	return os.WriteFile(filepath.Join(s.r.o.WorkDir, s.name+"-rotations.csv"), []byte(b.String()), 0o600)
}

func log2(x float64) float64 {
	n := 0.0
	for v := 1.0; v < x; v *= 2 {
		n++
	}
	return n
}

// sayUnrevoked prints the phase and conditions of every job not Revoked at the end, so a
// failed run says why (conditions carry no token bytes).
func (s *scenario) sayUnrevoked(ctx context.Context) {
	for _, k := range s.keys {
		job := &jobtokenv1alpha1.ImportJob{}
		if err := s.r.cl.Client.Get(ctx, k, job); err != nil {
			s.r.say("  not revoked: %s: %v", k, err)
			continue
		}
		if meta.IsStatusConditionTrue(job.Status.Conditions, jobtokenv1alpha1.ConditionRevoked) {
			continue
		}
		s.r.say("  not revoked: %s: phase %q, finalizers %v, revocation started %v", k, job.Status.Phase, job.Finalizers, job.Status.RevocationStartTime)
		for _, cond := range job.Status.Conditions {
			s.r.say("    %s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
	}
}
