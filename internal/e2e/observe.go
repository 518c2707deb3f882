package e2e

import (
	"context"
	"crypto/sha256"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
)

// digest identifies a token without keeping it in the observers' maps: only its SHA-256.
type digest [32]byte

func hashToken(tok string) digest { return sha256.Sum256([]byte(tok)) }

// useRecorder sits in front of the issuer's protected resource and records, per calling
// pod (its address on the bridge), when each access token was first presented: the
// moment a token was readable in that container, to within the worker's call interval.
type useRecorder struct {
	next http.Handler
	mu   sync.Mutex
	// first[ip][token] is the first call with that token from that address.
	first map[string]map[digest]time.Time
	// span[ip] is the first and last call from that address.
	span map[string][2]time.Time
}

func newUseRecorder(next http.Handler) *useRecorder {
	return &useRecorder{next: next, first: map[string]map[digest]time.Time{}, span: map[string][2]time.Time{}}
}

func (u *useRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		now := time.Now()
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
			d := hashToken(tok)
			u.mu.Lock()
			m := u.first[ip]
			if m == nil {
				m = map[digest]time.Time{}
				u.first[ip] = m
			}
			if _, seen := m[d]; !seen {
				m[d] = now
			}
			s := u.span[ip]
			if s[0].IsZero() {
				s[0] = now
			}
			s[1] = now
			u.span[ip] = s
			u.mu.Unlock()
		}
	}
	u.next.ServeHTTP(w, r)
}

// write is one change of the worker Secret's access token, as the watch saw it.
type write struct {
	at  time.Time
	tok digest
}

// secretWatcher records when one worker Secret's access token changed (by digest).
type secretWatcher struct {
	mu     sync.Mutex
	writes []write
}

func (s *secretWatcher) run(ctx context.Context, cs kubernetes.Interface, ns, name string) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	for ctx.Err() == nil {
		w, err := cs.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range w.ResultChan() {
			now := time.Now()
			sec, ok := ev.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			s.mu.Lock()
			if ev.Type != watch.Deleted {
				if tok := string(sec.Data[jobtokenv1alpha1.KeyAccessToken]); tok != "" {
					d := hashToken(tok)
					if len(s.writes) == 0 || s.writes[len(s.writes)-1].tok != d {
						s.writes = append(s.writes, write{at: now, tok: d})
					}
				}
			}
			s.mu.Unlock()
		}
		w.Stop()
	}
}

func (s *secretWatcher) snapshot() []write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]write(nil), s.writes...)
}

// propagation returns, for each write after the first and each pod that was calling at
// that moment and kept calling, how long it took until the pod presented that token or a
// newer one: the time a rotated token took to reach the file in the container.
func propagation(writes []write, u *useRecorder, pods []string) []time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []time.Duration
	for _, ip := range pods {
		first := u.first[ip]
		span := u.span[ip]
		if first == nil {
			continue
		}
		for i := 1; i < len(writes); i++ {
			w := writes[i]
			if span[0].After(w.at) || span[1].Before(w.at) {
				continue
			}
			var best time.Time
			for j := i; j < len(writes); j++ {
				if t, ok := first[writes[j].tok]; ok && (best.IsZero() || t.Before(best)) {
					best = t
				}
			}
			if best.IsZero() {
				continue
			}
			d := best.Sub(w.at)
			if d < 0 {
				d = 0
			}
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// dist summarizes a sorted sample.
type dist struct {
	N                        int
	Min, P50, P90, Max, Mean time.Duration
}

func summarize(sorted []time.Duration) dist {
	d := dist{N: len(sorted)}
	if d.N == 0 {
		return d
	}
	q := func(p float64) time.Duration { return sorted[int(p*float64(d.N-1)+0.5)] }
	var sum time.Duration
	for _, v := range sorted {
		sum += v
	}
	d.Min, d.P50, d.P90, d.Max, d.Mean = sorted[0], q(0.5), q(0.9), sorted[d.N-1], sum/time.Duration(d.N)
	return d
}

func (d dist) String() string {
	if d.N == 0 {
		return "no samples"
	}
	r := func(x time.Duration) string { return x.Round(10 * time.Millisecond).String() }
	return "n=" + itoa(d.N) + " min " + r(d.Min) + " p50 " + r(d.P50) + " p90 " + r(d.P90) + " max " + r(d.Max)
}
