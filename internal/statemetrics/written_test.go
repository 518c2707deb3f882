package statemetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// TestWrittenExpiryIsAheadOfTheStatus: the status may lag by --status-interval, so the
// expiry the alerts read is the later of the status's and the one last written; a job
// forgotten falls back to its status.
func TestWrittenExpiryIsAheadOfTheStatus(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	job := &jobtokenv1alpha1.ImportJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	job.Status.TokenExpiresAt = &metav1.Time{Time: t0.Add(time.Minute)}
	key := types.NamespacedName{Namespace: "ns", Name: "a"}
	w := &WrittenTokens{}

	if got := w.expiry(job); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("nothing written: expiry %s, want the status's %s", got, t0.Add(time.Minute))
	}
	w.TokenWritten(key, t0.Add(3*time.Minute), t0.Add(2*time.Minute), t0.Add(110*time.Second))
	if got := w.expiry(job); !got.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("a token written after the status: expiry %s, want %s", got, t0.Add(3*time.Minute))
	}
	other := job.DeepCopy()
	other.Name = "b"
	if got := w.expiry(other); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("another job took a's written expiry: %s", got)
	}
	job.Status.TokenExpiresAt = &metav1.Time{Time: t0.Add(4 * time.Minute)}
	if got := w.expiry(job); !got.Equal(t0.Add(4 * time.Minute)) {
		t.Errorf("status caught up and passed: expiry %s, want %s", got, t0.Add(4*time.Minute))
	}
	w.Forget(key)
	job.Status.TokenExpiresAt = &metav1.Time{Time: t0.Add(time.Minute)}
	if got := w.expiry(job); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("after Forget: expiry %s, want the status's", got)
	}
	var nilW *WrittenTokens
	if got := nilW.expiry(job); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("no record: expiry %s, want the status's", got)
	}
}

// TestSlackIsObservedAtTheWrite: the slack is the replaced token's expiry minus the time
// the new one was written; a job's first token has nothing to replace.
func TestSlackIsObservedAtTheWrite(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	w := &WrittenTokens{}
	before := histogram(t, Slack)
	w.TokenWritten(types.NamespacedName{Namespace: "ns", Name: "a"}, t0.Add(time.Minute), time.Time{}, t0)
	if got := histogram(t, Slack); got.GetSampleCount() != before.GetSampleCount() {
		t.Errorf("a first token was observed as a rotation")
	}
	w.TokenWritten(types.NamespacedName{Namespace: "ns", Name: "a"}, t0.Add(2*time.Minute), t0.Add(time.Minute), t0.Add(48*time.Second))
	w.TokenWritten(types.NamespacedName{Namespace: "ns", Name: "a"}, t0.Add(3*time.Minute), t0.Add(2*time.Minute), t0.Add(125*time.Second))
	got := histogram(t, Slack)
	if n := got.GetSampleCount() - before.GetSampleCount(); n != 2 {
		t.Fatalf("%d slack samples, want 2", n)
	}
	if sum := got.GetSampleSum() - before.GetSampleSum(); sum != 12-5 {
		t.Errorf("slack sum %.1f s, want 12 + (-5) = 7", sum)
	}
}

func histogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}
