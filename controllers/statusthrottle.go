package controllers

import (
	"hash/fnv"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// statusThrottle holds back status writes that change only routine fields, so that a
// rotation costs no status write of its own: the ImportJob status patch is the most
// expensive write of a rotation (the custom-resource path of the API server). What a
// person watches — the phase, a condition's status or reason, an error count, the
// observed generation — is written at once.
type statusThrottle struct {
	mu   sync.Mutex
	last map[types.NamespacedName]time.Time
}

// wait returns how long a status change from base to job may wait before it must be
// written: zero when it must be written now.
func (t *statusThrottle) wait(interval time.Duration, key types.NamespacedName, base, job *jobtokenv1alpha1.ImportJob, now time.Time) time.Duration {
	if interval <= 0 || !routineOnly(&base.Status, &job.Status) {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	last, ok := t.last[key]
	if !ok {
		// A process that just started (a restart, a new leader) has written nothing yet,
		// and every job's status may lag its stored chain by up to the interval: writing
		// them all at once would be a burst of the most expensive write, competing with
		// the rotations due. Each job's first routine write is spread over the interval
		// by its name instead; a change a person watches is still written at once.
		last = now.Add(-time.Duration(float64(interval) * (1 - spreadFraction(key))))
		if t.last == nil {
			t.last = map[types.NamespacedName]time.Time{}
		}
		t.last[key] = last
	}
	return last.Add(interval).Sub(now)
}

// spreadFraction is a stable point in [0, 1) for key.
func spreadFraction(key types.NamespacedName) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key.String()))
	return float64(h.Sum64()%10000) / 10000
}

func (t *statusThrottle) written(key types.NamespacedName, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last = map[types.NamespacedName]time.Time{}
	}
	t.last[key] = now
}

func (t *statusThrottle) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, key)
}

// routineOnly tells whether a and b differ only in routine fields: the rotation
// counters, the current token's times and revision, the next rotation time and the
// wording of conditions.
func routineOnly(a, b *jobtokenv1alpha1.ImportJobStatus) bool {
	return apiequality.Semantic.DeepEqual(withoutRoutine(a), withoutRoutine(b))
}

func withoutRoutine(st *jobtokenv1alpha1.ImportJobStatus) *jobtokenv1alpha1.ImportJobStatus {
	c := st.DeepCopy()
	c.Rotations, c.LastRotationTime, c.TokenRevision = 0, nil, 0
	c.TokenIssuedAt, c.TokenExpiresAt, c.TokenKeyID, c.SessionExpiresAt = nil, nil, "", nil
	c.NextRotationTime = nil
	for i := range c.Conditions {
		c.Conditions[i].Message = ""
	}
	return c
}
