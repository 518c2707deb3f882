package bench

import (
	"fmt"
	"github.com/jobtoken/jobtoken/internal/harness"
	"sort"
	"strings"
	"time"
)

// IDs of the benchmark's targets.
const (
	TargetTTFC              = "time to first credential ≤ 2x the raw writes"
	TargetNoopWrites        = "no API writes from reconciles with nothing to do"
	TargetDeadlineMisses    = "no deadline misses"
	TargetWritesPerRotation = "API writes per rotation ≤ 2"
	TargetIssuerCalls       = "one issuer call per rotation"
	TargetMemory            = "manager memory per job ≤ 20 KiB"
	TargetSaturation        = "saturated rotation ≥ 0.8 of the write ceiling"
)

// Target is one target of the run, judged.
type Target struct {
	ID string
	// Measured is false when the run gave nothing to judge the target by; Met is then
	// false too.
	Measured, Met bool
	// Why says what was measured, or why nothing was.
	Why string
}

// Verdict is the target's word in the table.
func (t Target) Verdict() string {
	switch {
	case !t.Measured:
		return harness.NotMeasured
	case t.Met:
		return harness.Met
	default:
		return harness.Missed
	}
}

// Targets judges the run against every target that applies to it (the saturation
// target only when that phase ran). The steady-rotation targets (deadline misses, writes
// and issuer calls per rotation, memory at the end of the window) are not measured when
// the window saw no rotation: zero writes for zero rotations proves nothing.
func (r *Result) Targets() []Target {
	f := r.Derive()
	s := r.Steady
	steady := s.Window > 0 && s.Rotations > 0
	noRotation := "no rotation in the steady window"
	judge := func(id string, measured bool, why string, met bool, got string) Target {
		if !measured {
			return Target{ID: id, Why: why}
		}
		return Target{ID: id, Measured: true, Met: met, Why: got}
	}
	out := []Target{
		judge(TargetTTFC, r.TTFC.N > 0 && f.TTFCRawCost > 0, "no first credential or no write floor measured",
			f.TTFCRatio <= 2, fmt.Sprintf("%.2fx", f.TTFCRatio)),
		judge(TargetNoopWrites, r.NoopReconciles > 0, "no reconcile with nothing to do was observed",
			r.NoopWrites == 0 && r.NoopRotations == 0, fmt.Sprintf("%d writes, %d rotations meanwhile", r.NoopWrites, r.NoopRotations)),
		judge(TargetDeadlineMisses, steady && s.RotationsSeen > 0, "no rotation in the steady window (or none seen by the tracker)",
			len(s.Misses) == 0, fmt.Sprintf("%d misses", len(s.Misses))),
		judge(TargetWritesPerRotation, steady, noRotation,
			f.WritesPerRotation <= 2, fmt.Sprintf("%.2f", f.WritesPerRotation)),
		judge(TargetIssuerCalls, steady, noRotation,
			f.IssuerPerRotation > 0.995 && f.IssuerPerRotation < 1.005, fmt.Sprintf("%.3f per rotation", f.IssuerPerRotation)),
		judge(TargetMemory, steady && r.Options.Jobs > 0 && r.Memory.BaselineHeap > 0 && r.Memory.SteadyHeap > 0, noRotation+" (or no heap figures)",
			f.HeapKiBPerJob <= 20, fmt.Sprintf("%.1f KiB", f.HeapKiBPerJob)),
	}
	if !r.Options.SkipChurn {
		out = append(out, r.Churn.target())
	}
	if !r.Options.SkipBurst {
		b := r.Burst
		out = append(out, judge(TargetSaturation, f.BurstRate > 0 && f.BurstCeiling > 0, "no rotation in the saturation phase (or no write floor)",
			f.CapacityRatio >= 0.8 && b.Rotated >= b.Jobs, fmt.Sprintf("%.2f, %d of %d jobs rotated", f.CapacityRatio, b.Rotated, b.Jobs)))
	}
	return out
}

// Failures lists the targets missed or not measured; empty when the run met them all.
func (r *Result) Failures() []Target {
	var out []Target
	for _, t := range r.Targets() {
		if !t.Met {
			out = append(out, t)
		}
	}
	return out
}

func targetVerdicts(ts []Target) map[string]string {
	m := make(map[string]string, len(ts))
	for _, t := range ts {
		m[t.ID] = t.Verdict()
	}
	return m
}

// Figures are the derived numbers the targets are judged on.
type Figures struct {
	TTFCRawCost        time.Duration // TTFCWrites raw serial writes
	TTFCRatio          float64
	SteadyRate         float64
	WritesPerRotation  float64
	IssuerPerRotation  float64
	IssuerPerJobHour   float64
	HeapKiBPerJob      float64
	RSSKiBPerJob       float64
	BurstRate          float64
	BurstWritesPerRot  float64
	BurstCeiling       float64 // raw concurrent writes/s ÷ writes per rotation
	CapacityRatio      float64
	RotationsPerJobHr  float64
	CPUmsPerRotation   map[string]float64
	BurstCPUmsPerRot   map[string]float64
	WritesPerRotByKind map[string]float64
}

// Derive computes the figures.
func (r *Result) Derive() Figures {
	var f Figures
	if r.FloorEmpty.Serial.PerSec > 0 {
		serialCost := time.Duration(float64(time.Second) / r.FloorEmpty.Serial.PerSec)
		f.TTFCRawCost = time.Duration(r.TTFCWrites * float64(serialCost))
	}
	if f.TTFCRawCost > 0 {
		f.TTFCRatio = float64(r.TTFC.P50) / float64(f.TTFCRawCost)
	}
	s := r.Steady
	if s.Window > 0 && s.Rotations > 0 {
		f.SteadyRate = s.Rotations / s.Window.Seconds()
		f.WritesPerRotation = float64(s.Writes) / s.Rotations
		f.IssuerPerRotation = float64(s.IssuerCalls) / s.Rotations
		f.IssuerPerJobHour = float64(s.IssuerCalls) / float64(r.Options.Jobs) / s.Window.Hours()
		f.RotationsPerJobHr = s.Rotations / float64(r.Options.Jobs) / s.Window.Hours()
		f.CPUmsPerRotation = map[string]float64{}
		for k, v := range s.CPUSeconds {
			f.CPUmsPerRotation[k] = v * 1000 / s.Rotations
		}
		f.WritesPerRotByKind = map[string]float64{}
		for k, v := range s.Breakdown {
			if harness.IsWrite(k) {
				f.WritesPerRotByKind[k] = float64(v) / s.Rotations
			}
		}
	}
	f.HeapKiBPerJob = r.Memory.HeapPerJob / 1024
	f.RSSKiBPerJob = r.Memory.RSSPerJob / 1024
	b := r.Burst
	if b.Duration > 0 && b.Rotations > 0 {
		f.BurstRate = float64(b.Rotated) / b.Duration.Seconds()
		f.BurstWritesPerRot = float64(b.Writes) / b.Rotations
		if f.BurstWritesPerRot > 0 {
			f.BurstCeiling = r.FloorLoaded.Concurrent.PerSec / f.BurstWritesPerRot
		}
		if f.BurstCeiling > 0 {
			f.CapacityRatio = f.BurstRate / f.BurstCeiling
		}
		f.BurstCPUmsPerRot = map[string]float64{}
		for k, v := range b.CPUSeconds {
			f.BurstCPUmsPerRot[k] = v * 1000 / float64(b.Rotated)
		}
	}
	return f
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// Markdown renders the run as the section of docs/benchmarks.md.
func (r *Result) Markdown(command string) string {
	f := r.Derive()
	v := targetVerdicts(r.Targets())
	o := r.Options
	conc := o.Concurrency
	if conc <= 0 {
		conc = managerConcurrency
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Benchmark: %d jobs", o.Jobs)
	w("")
	w("- Command: `%s`", command)
	w("- Run: %s, %s in all", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	w("- Machine: %s", r.Machine)
	w("- Setup: development issuer (access-token TTL %s, Password grant, RS256), %d ImportJobs in %d namespaces, propagation budget %s, rotation at the default 0.7 of the lifetime with 0.1 jitter; manager with %d concurrent reconciles, no client-side rate limit (as cmd/manager).",
		o.TTL, o.Jobs, o.Namespaces, o.PropagationBudget, conc)
	w("")
	w("| Measure | Result | Target | |")
	w("| --- | --- | --- | --- |")
	w("| Floor: raw Secret writes, 1 writer (empty cluster) | %.0f /s (p50 %s, p99 %s) | floor | |", r.FloorEmpty.Serial.PerSec, ms(r.FloorEmpty.Serial.P50), ms(r.FloorEmpty.Serial.P99))
	w("| Floor: raw Secret writes, %d writers (empty cluster) | %.0f /s (p50 %s) | floor | |", conc, r.FloorEmpty.Concurrent.PerSec, ms(r.FloorEmpty.Concurrent.P50))
	if r.FloorLoaded.Serial.Writes > 0 {
		w("| Floor: raw Secret writes, 1 / %d writers (with the %d jobs' objects, manager frozen) | %.0f /s / %.0f /s | floor | |", conc, o.Jobs, r.FloorLoaded.Serial.PerSec, r.FloorLoaded.Concurrent.PerSec)
	}
	w("| Time to first credential, %d ImportJobs one at a time (created → worker Secret holds a token and the Job exists) | median %s, p99 %s, max %s | | |", r.TTFC.N, ms(r.TTFC.P50), ms(r.TTFC.P99), ms(r.TTFC.Max))
	w("| Manager writes per first credential | %.2f (%s) | | |", r.TTFCWrites, breakdown(r.TTFCBreakdown, float64(r.TTFC.N)))
	w("| TTFC median ÷ cost of the same number of raw serial writes (%.2f × %s = %s) | %.2fx | ≤ 2x | %s |", r.TTFCWrites,
		ms(time.Duration(float64(time.Second)/r.FloorEmpty.Serial.PerSec)), ms(f.TTFCRawCost), f.TTFCRatio, v[TargetTTFC])
	if r.TTFCBulk.N > 0 {
		w("| Time to first credential, %d ImportJobs created at once by %d clients | median %s, p99 %s; all within %s | | |", r.TTFCBulk.N, o.CreateConcurrency,
			ms(r.TTFCBulk.P50), ms(r.TTFCBulk.P99), ms(r.TTFCBulkMakespan))
	}
	w("| API writes of reconciles with nothing to do (%.0f reconciles after an annotation change, %d rotations meanwhile) | %d | 0 | %s |", r.NoopReconciles, r.NoopRotations, r.NoopWrites, v[TargetNoopWrites])
	s := r.Steady
	w("| Steady rotation (%s window after %s warm-up) | %.0f rotations, %.2f /s (%.0f per job-hour; tracker saw %d) | | |", ms(s.Window), o.Warmup, s.Rotations, f.SteadyRate, f.RotationsPerJobHr, s.RotationsSeen)
	w("| Deadline misses (a token still in the worker Secret at expires_at − budget) | %d (min slack %s, 1st percentile %s; %d served past expires_at) | 0 | %s |", len(s.Misses), ms(s.MinSlack), ms(s.P1Slack), s.Expired, v[TargetDeadlineMisses])
	w("| API writes per rotation | %.2f (%s) | ≤ 2 | %s |", f.WritesPerRotation, breakdown(s.Breakdown, s.Rotations), v[TargetWritesPerRotation])
	w("| API reads per rotation (uncached GETs and LISTs) | %.2f | | |", float64(s.Reads)/max(s.Rotations, 1))
	w("| Issuer calls per job-hour | %.1f = %.3f per rotation (%d new TCP connections to the issuer, %.2f per call) | one per rotation | %s |", f.IssuerPerJobHour, f.IssuerPerRotation,
		s.IssuerConnections, float64(s.IssuerConnections)/max(float64(s.IssuerCalls), 1), v[TargetIssuerCalls])
	w("| Manager memory per job (live heap after GC, %d jobs vs none) | %.1f KiB (heap %s → %s; RSS %.1f KiB per job, %s → %s) | ≤ 20 KiB | %s |", o.Jobs, f.HeapKiBPerJob,
		mib(r.Memory.BaselineHeap), mib(r.Memory.SteadyHeap), f.RSSKiBPerJob, mib(r.Memory.BaselineRSS), mib(r.Memory.SteadyRSS), v[TargetMemory])
	if f.BurstRate > 0 {
		w("| Saturated rotation: every job due at once (manager frozen, then resumed) | %d rotations in %s = %.1f /s, %.2f writes per rotation | | |", r.Burst.Rotated, ms(r.Burst.Duration), f.BurstRate, f.BurstWritesPerRot)
		w("| Rotations/s ÷ (raw writes/s with %d writers ÷ writes per rotation) = %.1f ÷ (%.0f ÷ %.2f = %.1f) | %.2f | ≥ 0.8 | %s |", conc, f.BurstRate, r.FloorLoaded.Concurrent.PerSec, f.BurstWritesPerRot,
			f.BurstCeiling, f.CapacityRatio, v[TargetSaturation])
		if r.Burst.Rotated < r.Burst.Jobs {
			w("| Jobs rotated in the saturation phase | %d of %d (timed out) | all | %s |", r.Burst.Rotated, r.Burst.Jobs, v[TargetSaturation])
		}
	} else if !o.SkipBurst {
		w("| Saturated rotation: every job due at once (manager frozen, then resumed) | no rotation measured | ≥ 0.8 | %s |", v[TargetSaturation])
	}
	if !o.SkipChurn {
		w("%s", r.Churn.markdownRow(v[TargetMemoryReturn]))
	}
	w("| CPU per rotation, steady (ms) | %s | | |", cpuList(f.CPUmsPerRotation))
	if f.BurstRate > 0 {
		w("| CPU per rotation, saturated (ms) | %s | | |", cpuList(f.BurstCPUmsPerRot))
	}
	if s.Remints > 0 || s.ReconcileErrors > 0 {
		w("| Re-mints / reconcile errors in the steady window | %.0f / %.0f | 0 / 0 | |", s.Remints, s.ReconcileErrors)
	}
	if len(r.Profiles) > 0 {
		w("")
		w("Profiles of the manager (go tool pprof): %s", strings.Join(r.Profiles, ", "))
	}
	return b.String()
}

func breakdown(m map[string]int64, per float64) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		if harness.IsWrite(k) {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for _, x := range l {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.k, float64(x.v)/max(per, 1)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func cpuList(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	total := 0.0
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
		total += m[k]
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; total %.2f", total)
}
