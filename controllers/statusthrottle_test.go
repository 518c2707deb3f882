package controllers

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// A process that just started writes no burst of routine status patches: each job's
// first routine write waits a stable share of the interval, spread over it; a change a
// person watches is still written at once.
func TestStatusThrottleSpreadsTheFirstRoutineWrites(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	interval := 2 * time.Minute
	base := &jobtokenv1alpha1.ImportJob{}
	base.Status.Phase = jobtokenv1alpha1.PhaseRunning
	base.Status.Rotations = 3
	routine := base.DeepCopy()
	routine.Status.Rotations = 7
	phase := base.DeepCopy()
	phase.Status.Phase = jobtokenv1alpha1.PhaseSucceeded

	th := &statusThrottle{}
	waits := map[time.Duration]bool{}
	now0 := 0
	for i := range 200 {
		key := types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("job-%d", i)}
		w := th.wait(interval, key, base, routine, now)
		if w < 0 || w > interval {
			t.Fatalf("%s: first routine write waits %s, want within (0, %s]", key, w, interval)
		}
		if w == 0 {
			now0++
		}
		waits[w] = true
		if again := th.wait(interval, key, base, routine, now.Add(10*time.Second)); again != w-10*time.Second {
			t.Errorf("%s: the wait moved from %s to %s ten seconds later", key, w, again)
		}
		if got := th.wait(interval, key, base, phase, now); got != 0 {
			t.Errorf("%s: a phase change waits %s", key, got)
		}
	}
	if len(waits) < 150 || now0 > 5 {
		t.Errorf("200 jobs' first routine writes take %d distinct waits, %d at once: not spread over the interval", len(waits), now0)
	}
	if got := th.wait(0, types.NamespacedName{Name: "x"}, base, routine, now); got != 0 {
		t.Errorf("without an interval a routine change waits %s", got)
	}
}
