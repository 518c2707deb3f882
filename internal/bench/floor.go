package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Rate is a measured write rate.
type Rate struct {
	Writes   int
	Elapsed  time.Duration
	PerSec   float64
	P50, P99 time.Duration
}

// Floor is the raw Secret write rate of the API server: one writer, and as many writers
// as the manager reconciles at once.
type Floor struct {
	Serial      Rate
	Concurrent  Rate
	Concurrency int
}

// MeasureFloor updates Secrets shaped like a vault Secret (about 1.5 KiB of data) in ns:
// writes updates by one writer, then writes updates by concurrency writers (each its own
// Secret). These are plain PUTs, the cheapest way to change a Secret.
func MeasureFloor(ctx context.Context, c client.Client, ns string, writes, concurrency int) (Floor, error) {
	f := Floor{Concurrency: concurrency}
	secrets := make([]*corev1.Secret, concurrency)
	for i := range secrets {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "floor-"}, Data: floorData()}
		if err := c.Create(ctx, s); err != nil {
			return f, fmt.Errorf("floor: create Secret: %w", err)
		}
		secrets[i] = s
	}
	defer func() {
		for _, s := range secrets {
			_ = c.Delete(context.Background(), s)
		}
	}()
	var err error
	if f.Serial, err = floorRun(ctx, c, secrets[:1], writes); err != nil {
		return f, err
	}
	if f.Concurrent, err = floorRun(ctx, c, secrets, writes); err != nil {
		return f, err
	}
	return f, nil
}

func floorRun(ctx context.Context, c client.Client, secrets []*corev1.Secret, writes int) (Rate, error) {
	lat := make([]time.Duration, 0, writes)
	var mu sync.Mutex
	next := make(chan struct{}, writes)
	for range writes {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, len(secrets))
	start := time.Now()
	for _, s := range secrets {
		wg.Add(1)
		go func(s *corev1.Secret) {
			defer wg.Done()
			for range next {
				s.Data = floorData()
				t0 := time.Now()
				if err := c.Update(ctx, s); err != nil {
					errs <- fmt.Errorf("floor: update Secret: %w", err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(s)
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return Rate{}, err
	default:
	}
	r := Rate{Writes: len(lat), Elapsed: elapsed, PerSec: float64(len(lat)) / elapsed.Seconds()}
	r.P50, r.P99 = Percentile(lat, 0.5), Percentile(lat, 0.99)
	return r, nil
}

// floorData is random data the size of a vault Secret's (a JWT access token and the rest).
func floorData() map[string][]byte {
	b := make([]byte, 900)
	_, _ = rand.Read(b)
	r := make([]byte, 48)
	_, _ = rand.Read(r)
	return map[string][]byte{
		"access_token":  []byte(base64.RawURLEncoding.EncodeToString(b)),
		"refresh_token": []byte(base64.RawURLEncoding.EncodeToString(r)),
		"generation":    []byte("1"),
		"expires_at":    []byte(time.Now().UTC().Format(time.RFC3339Nano)),
		"issued_at":     []byte(time.Now().UTC().Format(time.RFC3339Nano)),
	}
}

// Percentile returns the p-quantile (nearest rank) of ds; it sorts a copy.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return s[i]
}
