package bench

import (
	"github.com/jobtoken/jobtoken/internal/harness"
	"slices"
	"strings"
	"testing"
	"time"
)

// goodResult is a run that meets every target.
func goodResult() *Result {
	r := &Result{Options: Options{Jobs: 1000, Concurrency: 4}}
	r.FloorEmpty.Serial = Rate{Writes: 1000, PerSec: 400}
	r.FloorEmpty.Concurrent = Rate{Writes: 1000, PerSec: 900}
	r.FloorLoaded = r.FloorEmpty
	r.TTFC = Dist{N: 200, P50: 30 * time.Millisecond, P99: 60 * time.Millisecond, Max: 80 * time.Millisecond}
	r.TTFCWrites = 8 // 8 writes at 2.5 ms = 20 ms raw: 1.5x
	r.NoopReconciles = 200
	s := &r.Steady
	s.Window = 3 * time.Minute
	s.Rotations = 3000
	s.RotationsSeen = 3000
	s.Writes = 6000
	s.IssuerCalls = 3000
	r.Memory.BaselineHeap, r.Memory.SteadyHeap = 4<<20, 20<<20 // 16 MiB for 1000 jobs: 16.4 KiB each
	r.Memory.HeapPerJob = float64(r.Memory.SteadyHeap-r.Memory.BaselineHeap) / 1000
	b := &r.Burst
	b.Jobs, b.Rotated, b.Rotations = 1000, 1000, 1000
	b.Writes = 2000
	b.Duration = 2500 * time.Millisecond // 400/s against a ceiling of 900/2 = 450/s: 0.89
	r.Churn = Churn{Jobs: 1000, Issuers: 100, StartHeap: 10 << 20, PeakHeap: 40 << 20, EndHeap: 10<<20 + 512<<10, Settled: 5 * time.Second}
	return r
}

func ids(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func TestTargetsAllMet(t *testing.T) {
	r := goodResult()
	ts := r.Targets()
	if len(ts) != 8 {
		t.Fatalf("targets %v, want 8", ids(ts))
	}
	for _, tg := range ts {
		if !tg.Measured || !tg.Met || tg.Verdict() != harness.Met {
			t.Errorf("%s: measured %v met %v (%s)", tg.ID, tg.Measured, tg.Met, tg.Why)
		}
	}
	if f := r.Failures(); len(f) != 0 {
		t.Errorf("failures %v", ids(f))
	}
	md := r.Markdown("make bench")
	if strings.Contains(md, harness.Missed) || strings.Contains(md, harness.NotMeasured) {
		t.Errorf("the report of a good run has a missed or unmeasured target:\n%s", md)
	}
}

func TestTargetsZeroRotationsNotMet(t *testing.T) {
	r := goodResult()
	r.Steady.Rotations, r.Steady.RotationsSeen, r.Steady.Writes, r.Steady.IssuerCalls = 0, 0, 0, 0
	failed := ids(r.Failures())
	for _, id := range []string{TargetWritesPerRotation, TargetDeadlineMisses, TargetIssuerCalls, TargetMemory} {
		if !slices.Contains(failed, id) {
			t.Errorf("%q passes on a run without rotations (failures %v)", id, failed)
		}
	}
	for _, tg := range r.Targets() {
		if tg.ID == TargetWritesPerRotation && (tg.Measured || tg.Met || tg.Verdict() != harness.NotMeasured) {
			t.Errorf("writes per rotation with no rotation: measured %v met %v verdict %s", tg.Measured, tg.Met, tg.Verdict())
		}
	}
	md := r.Markdown("make bench")
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| API writes per rotation") && !strings.HasSuffix(line, "| "+harness.NotMeasured+" |") {
			t.Errorf("row %q, want %s", line, harness.NotMeasured)
		}
	}
}

func TestTargetsMissedIsAFailure(t *testing.T) {
	r := goodResult()
	r.Steady.Writes = 3 * int64(r.Steady.Rotations) // 3 writes per rotation
	if got := ids(r.Failures()); !slices.Equal(got, []string{TargetWritesPerRotation}) {
		t.Fatalf("failures %v, want only %q", got, TargetWritesPerRotation)
	}
	if !strings.Contains(r.Markdown("make bench"), "| ≤ 2 | "+harness.Missed+" |") {
		t.Error("the report does not say the writes target was missed")
	}

	r = goodResult()
	r.Burst.Rotated = 999 // the saturation phase timed out
	if got := ids(r.Failures()); !slices.Equal(got, []string{TargetSaturation}) {
		t.Errorf("failures %v, want only %q", got, TargetSaturation)
	}

	r = goodResult()
	r.Burst.Rotations, r.Burst.Rotated = 0, 0 // the phase ran, nothing rotated
	if got := ids(r.Failures()); !slices.Equal(got, []string{TargetSaturation}) {
		t.Errorf("failures %v, want only %q", got, TargetSaturation)
	}
	r.Options.SkipBurst = true
	if got := ids(r.Failures()); len(got) != 0 {
		t.Errorf("a skipped phase is judged: failures %v", got)
	}
}

// TestMemoryReturnTarget: the heap at the end of the memory-return phase is judged
// against 1.10 of its start; a phase that did not reach its end is not measured, a
// skipped one not judged.
func TestMemoryReturnTarget(t *testing.T) {
	r := goodResult()
	r.Churn.EndHeap = r.Churn.StartHeap * 12 / 10 // 1.2
	if got := ids(r.Failures()); !slices.Equal(got, []string{TargetMemoryReturn}) {
		t.Fatalf("failures %v, want only %q", got, TargetMemoryReturn)
	}
	if !strings.Contains(r.Markdown("make bench"), "| 1.200 (heap 10.0 MiB") {
		t.Errorf("the report does not give the ratio:\n%s", r.Markdown("make bench"))
	}
	r.Churn.EndHeap = 0
	for _, tg := range r.Targets() {
		if tg.ID == TargetMemoryReturn && (tg.Measured || tg.Verdict() != harness.NotMeasured) {
			t.Errorf("a phase without an end reading: measured %v, verdict %s", tg.Measured, tg.Verdict())
		}
	}
	r.Options.SkipChurn = true
	if got := ids(r.Failures()); len(got) != 0 {
		t.Errorf("a skipped phase is judged: failures %v", got)
	}
}
