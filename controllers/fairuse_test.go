//go:build integration

package controllers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// TestHangingIssuerDoesNotStarveOthers: one issuer answers discovery but never answers
// a token request, another is healthy, with several jobs on each and the manager's
// default workers and limits. The healthy issuer's jobs keep every token fresh
// (measured: the least time any worker token had left, sampled throughout), and the
// hanging issuer never sees more token requests at once than its concurrency limit.
func TestHangingIssuerDoesNotStarveOthers(t *testing.T) {
	const (
		healthyJobs = 4
		stuckJobs   = 6 // more than the manager's 4 workers
		ttl         = 10 * time.Second
		observe     = 30 * time.Second
	)
	// 10s tokens: a healthy job rotates about every 5s, with 1s of propagation budget;
	// workers held for the request timeout (10s) by the hanging issuer would let them
	// expire, while the margin absorbs a loaded machine's delays.
	h := newHarness(t, harnessOptions{issuer: devissuer.Config{AccessTokenTTL: ttl}})
	h.startManager(managerOptions{})

	dev, err := devissuer.New(devissuer.Config{AccessTokenTTL: time.Hour,
		Clients: map[string]string{clientID: clientSecret}, Users: map[string]string{userName: userPassword}})
	h.must(err)
	var (
		mu                 sync.Mutex
		inFlight, maxSeen  int
		tokenRequestsTotal int
	)
	done := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			dev.Handler().ServeHTTP(w, r) // discovery and keys answer: the issuer is Ready
			return
		}
		// Read the body: only then does the server notice the client giving up (and end
		// the request's context), so inFlight counts requests the manager still waits on.
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		inFlight++
		tokenRequestsTotal++
		maxSeen = max(maxSeen, inFlight)
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-done:
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	t.Cleanup(hanging.Close)
	t.Cleanup(func() { close(done) })
	h.must(env.Client.Create(h.ctx, &jobtokenv1alpha1.TokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "hanging"},
		Spec:       testenv.DevIssuerSpec(hanging.URL, clientID, "client"),
	}))

	var healthy []*jobtokenv1alpha1.ImportJob
	for i := range healthyJobs {
		job := h.importJob("healthy-"+string(rune('a'+i)), jobtokenv1alpha1.GrantPassword)
		h.must(env.Client.Create(h.ctx, job))
		healthy = append(healthy, job)
	}
	for _, job := range healthy {
		testenv.Eventually(h.t, 30*time.Second, job.Name+" running", func() bool {
			return h.getJob(job.Name).Status.Phase == jobtokenv1alpha1.PhaseRunning
		})
	}
	for i := range stuckJobs {
		job := h.importJob("stuck-"+string(rune('a'+i)), jobtokenv1alpha1.GrantPassword)
		job.Spec.IssuerRef.Name = "hanging"
		h.must(env.Client.Create(h.ctx, job))
	}
	testenv.Eventually(h.t, 20*time.Second, "the hanging issuer holding requests", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight > 0
	})

	rotationsAt := map[string]int64{}
	for _, job := range healthy {
		rotationsAt[job.Name] = h.getJob(job.Name).Status.Rotations
	}
	minSlack := time.Duration(1<<62 - 1)
	worst := ""
	for end := time.Now().Add(observe); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		for _, job := range healthy {
			ws, err := h.workerSecret(job)
			h.must(err)
			exp, err := time.Parse(time.RFC3339, string(ws.Data[jobtokenv1alpha1.KeyExpiresAt]))
			h.must(err)
			if slack := time.Until(exp); slack < minSlack {
				minSlack, worst = slack, job.Name
			}
		}
	}
	mu.Lock()
	peak, total := maxSeen, tokenRequestsTotal
	mu.Unlock()
	t.Logf("healthy issuer: least time left on a worker token over %s: %s (%s); hanging issuer: %d token requests, at most %d at once",
		observe, minSlack.Round(time.Millisecond), worst, total, peak)
	if minSlack <= 0 {
		t.Errorf("a healthy job's worker token expired (%s past, %s): the hanging issuer starved it", -minSlack, worst)
	}
	for _, job := range healthy {
		if got := h.getJob(job.Name).Status.Rotations - rotationsAt[job.Name]; got < int64(observe/ttl) {
			t.Errorf("%s rotated %d times in %s with %s tokens", job.Name, got, observe, ttl)
		}
	}
	if peak > DefaultIssuerConcurrency {
		t.Errorf("the hanging issuer saw %d token requests at once, its limit is %d", peak, DefaultIssuerConcurrency)
	}
	if total == 0 {
		t.Error("the hanging issuer received no token request: the test proves nothing")
	}
}
