// Package bench measures the operator against the real kube-apiserver and etcd that the
// tests use (bin/k8s), with the development issuer in-process and the manager in a child
// process: the raw write floor, time to first credential, steady rotation of thousands of
// jobs and the rotation throughput under saturation. It is what `make bench` runs
// (cmd/bench), on the harness it shares with the chaos runs (internal/harness).
//
// Token bytes are never printed: the harness reads only expires_at and revisions of the
// worker Secrets, and keeps hashes of the refresh tokens it sees at the issuer.
package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/jobtoken/jobtoken/internal/harness"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobtoken/jobtoken/internal/devissuer"
)

// Options shape a benchmark run.
type Options struct {
	// Jobs is how many ImportJobs rotate in the steady phase; the first TTFCJobs of them
	// are created one at a time for the time-to-first-credential figures.
	Jobs, TTFCJobs int
	// TTL is the issuer's access-token lifetime; PropagationBudget the ImportJobs' budget.
	TTL, PropagationBudget time.Duration
	// Warmup runs before the Steady window is measured.
	Warmup, Steady time.Duration
	// Concurrency is the manager's MaxConcurrentReconciles (0: the controller's default, 4).
	Concurrency int
	// Namespaces spreads the jobs; CreateConcurrency creates the bulk of them.
	Namespaces, CreateConcurrency int
	// FloorWrites is how many raw writes each floor measurement makes.
	FloorWrites int
	// SkipBurst skips the saturation phase.
	SkipBurst bool
	// ChurnJobs ImportJobs on ChurnIssuers TokenIssuers are created and deleted in the
	// memory-return phase (churn.go; defaults 1000 and 100); SkipChurn skips it.
	ChurnJobs, ChurnIssuers int
	SkipChurn               bool
	// Profile captures CPU and heap profiles of the manager into WorkDir.
	Profile bool
	// WorkDir holds the kubeconfig, the manager's log and profiles.
	WorkDir string
	// Bin is the executable whose "manager" sub-command runs the manager role.
	Bin string
	Out io.Writer
}

// Defaults fills zero fields.
func (o *Options) Defaults() {
	if o.Jobs <= 0 {
		o.Jobs = 1000
	}
	if o.TTFCJobs <= 0 {
		o.TTFCJobs = 200
	}
	o.TTFCJobs = min(o.TTFCJobs, o.Jobs)
	if o.TTL <= 0 {
		o.TTL = time.Minute
	}
	if o.PropagationBudget <= 0 {
		o.PropagationBudget = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Steady <= 0 {
		o.Steady = 3 * time.Minute
	}
	if o.Namespaces <= 0 {
		o.Namespaces = 10
	}
	if o.CreateConcurrency <= 0 {
		o.CreateConcurrency = 8
	}
	if o.FloorWrites <= 0 {
		o.FloorWrites = 1000
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
}

// managerConcurrency is the controller's default MaxConcurrentReconciles.
const managerConcurrency = 4

// Dist summarises durations.
type Dist struct {
	N             int
	P50, P99, Max time.Duration
}

func dist(ds []time.Duration) Dist {
	d := Dist{N: len(ds), P50: Percentile(ds, 0.5), P99: Percentile(ds, 0.99)}
	for _, x := range ds {
		d.Max = max(d.Max, x)
	}
	return d
}

// Result is everything a run measured.
type Result struct {
	Options Options
	Machine harness.Machine
	Started time.Time
	Elapsed time.Duration

	FloorEmpty, FloorLoaded Floor

	TTFC             Dist
	TTFCWrites       float64 // manager writes per first credential
	TTFCBreakdown    map[string]int64
	TTFCBulk         Dist
	TTFCBulkMakespan time.Duration

	NoopReconciles float64
	NoopWrites     int64
	NoopRotations  int

	Steady struct {
		Window               time.Duration
		Rotations            float64 // the manager's count
		RotationsSeen        int     // revision changes the tracker saw
		Misses               []harness.Miss
		Expired              int
		MinSlack, P1Slack    time.Duration
		Writes               int64
		Breakdown            map[string]int64
		Reads                int64
		IssuerCalls          int64
		IssuerConnections    int64
		Remints              float64
		CPUSeconds           map[string]float64
		ReconcileErrors      float64
		QueueDepthAtEnd      float64
		IssuerCallsByOutcome map[string]float64
	}

	Memory struct {
		BaselineHeap, SteadyHeap uint64
		BaselineRSS, SteadyRSS   uint64
		HeapPerJob, RSSPerJob    float64
	}

	Burst struct {
		Jobs, Rotated int
		Duration      time.Duration
		Writes        int64
		Rotations     float64
		Breakdown     map[string]int64
		CPUSeconds    map[string]float64
	}

	Churn Churn

	Profiles []string
}

func (o Options) say(start time.Time, format string, args ...any) {
	_, _ = fmt.Fprintf(o.Out, "[%6s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
}

// Run performs the benchmark. It starts and stops everything it needs.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.Defaults()
	if o.Bin == "" {
		return nil, errors.New("bench: Options.Bin (the executable with the manager role) is required")
	}
	res := &Result{Options: o, Machine: harness.DescribeMachine(), Started: time.Now()}
	start := res.Started
	say := func(format string, args ...any) { o.say(start, format, args...) }
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	say("starting kube-apiserver and etcd (bin/k8s)")
	cl, err := harness.StartCluster(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cl.Stop() }()
	c := cl.Client

	iss, err := harness.StartIssuer(devissuer.Config{
		AccessTokenTTL: o.TTL, RefreshTokenTTL: max(10*time.Minute, 10*o.TTL),
		Clients: map[string]string{harness.ClientID: harness.ClientSecret},
		Users:   map[string]string{harness.UserName: harness.UserPassword},
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = iss.Close() }()
	fx, err := harness.SetupFixture(ctx, c, "bench", o.Namespaces, iss.URL)
	if err != nil {
		return nil, err
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = managerConcurrency
	}

	say("floor on the empty cluster: %d raw Secret writes serially, then %d by %d writers", o.FloorWrites, o.FloorWrites, conc)
	if res.FloorEmpty, err = MeasureFloor(ctx, c, fx.VaultNamespace, o.FloorWrites, conc); err != nil {
		return nil, err
	}
	say("  serial %.0f writes/s (p50 %s), %d writers %.0f writes/s", res.FloorEmpty.Serial.PerSec, res.FloorEmpty.Serial.P50.Round(10*time.Microsecond),
		conc, res.FloorEmpty.Concurrent.PerSec)

	tracker, err := harness.NewTracker(ctx, cl.Clientset, o.PropagationBudget, "bench-")
	if err != nil {
		return nil, err
	}

	statsFile := filepath.Join(o.WorkDir, "manager.addr")
	_ = os.Remove(statsFile)
	args := []string{"manager", "--kubeconfig", cl.Kubeconfig, "--vault-namespace", fx.VaultNamespace, "--stats-file", statsFile}
	if o.Concurrency > 0 {
		args = append(args, "--max-concurrent-reconciles", strconv.Itoa(o.Concurrency))
	}
	mgr, err := testenv.StartProc("manager", o.Bin, args, filepath.Join(o.WorkDir, "manager.log"))
	if err != nil {
		return nil, err
	}
	defer stopManager(mgr, say)
	mc, err := harness.WaitManagerStats(ctx, statsFile, mgr, time.Minute)
	if err != nil {
		return nil, err
	}
	if err := harness.WaitIssuerReady(ctx, c, fx.IssuerName, time.Minute); err != nil {
		return nil, fmt.Errorf("the ClusterTokenIssuer did not become Ready: %w", err)
	}
	time.Sleep(3 * time.Second)
	base, err := mc.Stats(true)
	if err != nil {
		return nil, err
	}
	res.Memory.BaselineHeap, res.Memory.BaselineRSS = base.HeapAlloc, base.RSS
	say("manager started (pid %d), 0 jobs: heap %s, RSS %s", mgr.PID(), mib(base.HeapAlloc), mib(base.RSS))

	spec := harness.JobSpec{PropagationBudget: o.PropagationBudget}
	keys := make([]client.ObjectKey, o.Jobs)

	// Time to first credential, one job at a time.
	say("time to first credential: %d ImportJobs, one at a time", o.TTFCJobs)
	s0, err := mc.Stats(false)
	if err != nil {
		return nil, err
	}
	seqStart := time.Now()
	var ttfc []time.Duration
	for i := range o.TTFCJobs {
		job := fx.ImportJob(i, spec)
		keys[i] = client.ObjectKeyFromObject(job)
		t0 := time.Now()
		tracker.Created(job.Namespace, job.Name, t0)
		if err := c.Create(ctx, job); err != nil {
			return nil, err
		}
		var d time.Duration
		if err := testenv.Poll(ctx, time.Minute, 2*time.Millisecond, func() bool {
			var ok bool
			d, ok = tracker.Ready(job.Namespace, job.Name)
			return ok
		}); err != nil {
			return nil, fmt.Errorf("ImportJob %s got no credential: %w", job.Name, err)
		}
		ttfc = append(ttfc, d)
	}
	seqEnd := time.Now()
	time.Sleep(time.Second) // events are written asynchronously
	s1, err := mc.Stats(false)
	if err != nil {
		return nil, err
	}
	res.TTFC = dist(ttfc)
	res.TTFCBreakdown = harness.Diff(s0.Requests, s1.Requests)
	res.TTFCWrites = float64(harness.SumWrites(res.TTFCBreakdown)) / float64(o.TTFCJobs)
	say("  median %s, p99 %s; %.1f manager writes per first credential", res.TTFC.P50.Round(time.Millisecond), res.TTFC.P99.Round(time.Millisecond), res.TTFCWrites)

	// Reconciles with nothing to do must not write: poke the jobs minted recently
	// (their rotation is far away) with an annotation, which the controller watches.
	if err := res.noop(ctx, c, mc, tracker, keys[:o.TTFCJobs], seqStart, seqEnd, o); err != nil {
		return nil, err
	}
	say("  no-op reconciles: %.0f reconciles, %d writes (%d rotations in the window)", res.NoopReconciles, res.NoopWrites, res.NoopRotations)

	// The rest of the jobs, created in bulk.
	if n := o.Jobs - o.TTFCJobs; n > 0 {
		say("creating the other %d ImportJobs with %d clients", n, o.CreateConcurrency)
		bulkStart := time.Now()
		if err := harness.ForEach(ctx, n, o.CreateConcurrency, func(k int) error {
			i := o.TTFCJobs + k
			job := fx.ImportJob(i, spec)
			keys[i] = client.ObjectKeyFromObject(job)
			tracker.Created(job.Namespace, job.Name, time.Now())
			return c.Create(ctx, job)
		}); err != nil {
			return nil, err
		}
		timeout := max(5*time.Minute, time.Duration(n)*200*time.Millisecond)
		if err := testenv.Poll(ctx, timeout, 200*time.Millisecond, func() bool { return tracker.ReadyCount() >= o.Jobs }); err != nil {
			return nil, fmt.Errorf("only %d of %d ImportJobs got a credential: %w", tracker.ReadyCount(), o.Jobs, err)
		}
		var bulk []time.Duration
		last := time.Time{}
		for _, k := range keys[o.TTFCJobs:] {
			d, _ := tracker.Ready(k.Namespace, k.Name)
			bulk = append(bulk, d)
		}
		last = time.Now()
		res.TTFCBulk = dist(bulk)
		res.TTFCBulkMakespan = last.Sub(bulkStart)
		say("  all %d hold a credential after %s (TTFC median %s, p99 %s)", o.Jobs, res.TTFCBulkMakespan.Round(time.Second),
			res.TTFCBulk.P50.Round(time.Millisecond), res.TTFCBulk.P99.Round(time.Millisecond))
	}

	if o.Warmup > 0 {
		say("warm-up %s", o.Warmup)
		if err := testenv.Sleep(ctx, o.Warmup); err != nil {
			return nil, err
		}
	}

	// Steady rotation.
	say("steady rotation: %d jobs, token TTL %s, budget %s, measuring %s", o.Jobs, o.TTL, o.PropagationBudget, o.Steady)
	pids := harness.ControlPlanePIDs()
	pids["manager"] = mgr.PID()
	pids["bench (issuer, tracker)"] = os.Getpid()
	cpu0 := cpuTimes(pids)
	st0, err := mc.Stats(false)
	if err != nil {
		return nil, err
	}
	ic0, tr0 := iss.Counters(), iss.Traffic()
	t0 := time.Now()
	profDone := make(chan struct{})
	if o.Profile {
		go func() {
			defer close(profDone)
			_ = testenv.Sleep(ctx, o.Steady/4)
			p := filepath.Join(o.WorkDir, "steady-cpu.pprof")
			if err := mc.CPUProfile(min(30*time.Second, o.Steady/2), p); err == nil {
				res.Profiles = append(res.Profiles, p)
			}
		}()
	} else {
		close(profDone)
	}
	if err := testenv.Sleep(ctx, o.Steady); err != nil {
		return nil, err
	}
	<-profDone
	t1 := time.Now()
	st1, err := mc.Stats(false)
	if err != nil {
		return nil, err
	}
	cpu1 := cpuTimes(pids)
	ic1, tr1 := iss.Counters(), iss.Traffic()
	win := tracker.Between(t0, t1)
	ss := &res.Steady
	ss.Window = t1.Sub(t0)
	ss.Rotations = st1.Metrics["jobtoken_rotations_total"] - st0.Metrics["jobtoken_rotations_total"]
	ss.Remints = st1.Metrics["jobtoken_remints_total"] - st0.Metrics["jobtoken_remints_total"]
	ss.RotationsSeen = win.Rotations
	ss.Misses, ss.Expired, ss.MinSlack, ss.P1Slack = win.Misses, win.Expired, win.MinSlack, win.P1Slack
	ss.Breakdown = harness.Diff(st0.Requests, st1.Requests)
	ss.Writes = harness.SumWrites(ss.Breakdown)
	for k, v := range ss.Breakdown {
		if !harness.IsWrite(k) && !isWatch(k) {
			ss.Reads += v
		}
	}
	ss.IssuerCalls = sumTokenRequests(ic1) - sumTokenRequests(ic0)
	ss.IssuerConnections = tr1.Connections - tr0.Connections
	ss.CPUSeconds = diffCPU(cpu0, cpu1)
	ss.ReconcileErrors = st1.Metrics["controller_runtime_reconcile_total{error}"] - st0.Metrics["controller_runtime_reconcile_total{error}"]
	ss.QueueDepthAtEnd = st1.Metrics["workqueue_depth"]
	ss.IssuerCallsByOutcome = map[string]float64{}
	for k, v := range st1.Metrics {
		if len(k) > len("jobtoken_token_requests_total") && k[:len("jobtoken_token_requests_total")] == "jobtoken_token_requests_total" {
			if d := v - st0.Metrics[k]; d != 0 {
				ss.IssuerCallsByOutcome[k[len("jobtoken_token_requests_total"):]] = d
			}
		}
	}
	mem, err := mc.Stats(true)
	if err != nil {
		return nil, err
	}
	res.Memory.SteadyHeap, res.Memory.SteadyRSS = mem.HeapAlloc, mem.RSS
	res.Memory.HeapPerJob = (float64(mem.HeapAlloc) - float64(base.HeapAlloc)) / float64(o.Jobs)
	res.Memory.RSSPerJob = (float64(mem.RSS) - float64(base.RSS)) / float64(o.Jobs)
	if o.Profile {
		p := filepath.Join(o.WorkDir, "steady-heap.pprof")
		if err := mc.HeapProfile(p); err == nil {
			res.Profiles = append(res.Profiles, p)
		}
	}
	say("  %.0f rotations (%.1f/s), %d deadline misses, %.2f writes per rotation, %.2f issuer calls per rotation, heap %.1f KiB per job",
		ss.Rotations, ss.Rotations/ss.Window.Seconds(), len(ss.Misses), float64(ss.Writes)/ss.Rotations,
		float64(ss.IssuerCalls)/ss.Rotations, res.Memory.HeapPerJob/1024)

	if !o.SkipBurst {
		if err := res.burst(ctx, c, cl.Clientset, mgr, mc, tracker, fx, pids, o, say); err != nil {
			return nil, err
		}
	}
	if !o.SkipChurn {
		stopManager(mgr, say) // the phase's own manager is the only one serving its objects
		if res.Churn, err = runChurn(ctx, cl, iss.URL, o, say); err != nil {
			return nil, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// noop pokes the recently minted jobs and counts the manager's writes meanwhile.
func (res *Result) noop(ctx context.Context, c client.Client, mc *harness.ManagerClient, tracker *harness.Tracker, keys []client.ObjectKey,
	_, _ time.Time, o Options) error {
	// Jobs minted less than half a TTL ago are far from their rotation (at 0.6-0.7 TTL).
	cut := time.Now().Add(-o.TTL / 2)
	var poke []client.ObjectKey
	for _, k := range keys {
		if tracker.Since(k.Namespace, k.Name).After(cut) {
			poke = append(poke, k)
		}
	}
	s0, err := mc.Stats(false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"bench.jobtoken.dev/poke":"`+strconv.FormatInt(t0.UnixNano(), 10)+`"}}}`))
	if err := harness.ForEach(ctx, len(poke), 4, func(i int) error {
		obj := harness.ImportJobRef(poke[i])
		return c.Patch(ctx, obj, patch)
	}); err != nil {
		return err
	}
	want := s0.Metrics["controller_runtime_reconcile_total"] + float64(len(poke))
	var s1 harness.ManagerStats
	_ = testenv.Poll(ctx, 20*time.Second, 200*time.Millisecond, func() bool {
		s1, err = mc.Stats(false)
		return err == nil && s1.Metrics["controller_runtime_reconcile_total"] >= want
	})
	time.Sleep(time.Second)
	if s1, err = mc.Stats(false); err != nil {
		return err
	}
	res.NoopReconciles = s1.Metrics["controller_runtime_reconcile_total"] - s0.Metrics["controller_runtime_reconcile_total"]
	res.NoopWrites = harness.SumWrites(harness.Diff(s0.Requests, s1.Requests))
	res.NoopRotations = tracker.Between(t0, time.Now()).Rotations
	return nil
}

// burst freezes the manager until every job is due, measures the floor again with the
// jobs' objects in place, then lets the manager catch up: rotation throughput when
// saturated.
func (res *Result) burst(ctx context.Context, c client.Client, cs kubernetes.Interface, mgr *testenv.Proc, mc *harness.ManagerClient, tracker *harness.Tracker, fx *harness.Fixture,
	pids map[string]int, o Options, say func(string, ...any)) error {
	conc := o.Concurrency
	if conc <= 0 {
		conc = managerConcurrency
	}
	b0, err := mc.Stats(false)
	if err != nil {
		return err
	}
	pause := time.Duration(0.72*float64(o.TTL)) + 2*time.Second
	say("saturation: manager frozen (SIGSTOP) for %s so that every job is due; floor measured meanwhile", pause.Round(time.Second))
	if err := mgr.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	paused := time.Now()
	floor, ferr := MeasureFloor(ctx, c, fx.VaultNamespace, o.FloorWrites, conc)
	if ferr != nil {
		_ = mgr.Signal(syscall.SIGCONT)
		return ferr
	}
	res.FloorLoaded = floor
	say("  floor with %d jobs' objects: serial %.0f writes/s, %d writers %.0f writes/s", o.Jobs, floor.Serial.PerSec, conc, floor.Concurrent.PerSec)
	if rest := pause - time.Since(paused); rest > 0 {
		if err := testenv.Sleep(ctx, rest); err != nil {
			_ = mgr.Signal(syscall.SIGCONT)
			return err
		}
	}
	cpu0 := cpuTimes(pids)
	resumed := time.Now()
	if err := mgr.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	profDone := make(chan struct{})
	if o.Profile {
		apiProf := make(chan string, 1)
		go func() {
			// The API server's own profile: it serves /debug/pprof to system:masters.
			p := filepath.Join(o.WorkDir, "burst-apiserver-cpu.pprof")
			b, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "10").DoRaw(ctx)
			if err == nil && os.WriteFile(p, b, 0o600) == nil {
				apiProf <- p
				return
			}
			apiProf <- ""
		}()
		go func() {
			defer close(profDone)
			p := filepath.Join(o.WorkDir, "burst-cpu.pprof")
			if err := mc.CPUProfile(10*time.Second, p); err == nil {
				res.Profiles = append(res.Profiles, p)
			}
			if p := <-apiProf; p != "" {
				res.Profiles = append(res.Profiles, p)
			}
		}()
	} else {
		close(profDone)
	}
	timeout := max(5*time.Minute, time.Duration(o.Jobs)*100*time.Millisecond)
	var n int
	var last time.Time
	err = testenv.Poll(ctx, timeout, 50*time.Millisecond, func() bool {
		n, last = tracker.RotatedSince(paused)
		return n >= o.Jobs
	})
	cpu1 := cpuTimes(pids)
	<-profDone
	time.Sleep(time.Second)
	b1, serr := mc.Stats(false)
	if serr != nil {
		return serr
	}
	b := &res.Burst
	b.Jobs, b.Rotated = o.Jobs, n
	b.Duration = last.Sub(resumed)
	b.Breakdown = harness.Diff(b0.Requests, b1.Requests)
	b.Writes = harness.SumWrites(b.Breakdown)
	b.Rotations = b1.Metrics["jobtoken_rotations_total"] - b0.Metrics["jobtoken_rotations_total"]
	b.CPUSeconds = diffCPU(cpu0, cpu1)
	if err != nil {
		say("  only %d of %d jobs rotated: %v", n, o.Jobs, err)
		return nil
	}
	say("  %d rotations in %s: %.1f/s, %.2f writes per rotation", n, b.Duration.Round(time.Millisecond),
		float64(n)/b.Duration.Seconds(), float64(b.Writes)/b.Rotations)
	return nil
}

func isWatch(key string) bool { return len(key) > 6 && key[:6] == "WATCH " }

func sumTokenRequests(c devissuer.Counters) int64 {
	var n int64
	for _, m := range c.TokenRequests {
		for _, v := range m {
			n += v
		}
	}
	return n
}

func cpuTimes(pids map[string]int) map[string]float64 {
	out := map[string]float64{}
	for name, pid := range pids {
		out[name] = harness.CPUSeconds(pid)
	}
	return out
}

func diffCPU(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
