package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/tokenchain"
	"github.com/jobtoken/jobtoken/pkg/tokenfile"
)

// countingTransport counts every 401 the server answers, below any retry.
type countingTransport struct {
	base http.RoundTripper
	side *Side
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.side.Calls.Add(1)
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		t.side.Unauthorized.Add(1)
	}
	return resp, err
}

func record(ctx context.Context, hc *http.Client, url string, n int, header string) (int, error) {
	body := fmt.Appendf(nil, `{"record":%d,"format":"MARC"}`, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// baselineWorker imports with the token it was handed at start, as in the seed: a 401
// fails the record.
func baselineWorker(ctx context.Context, url, token string, records int, interval time.Duration, side *Side, start time.Time, first401 *atomic.Int64) {
	hc := &http.Client{Transport: countingTransport{base: http.DefaultTransport, side: side}, Timeout: 10 * time.Second}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := range records {
		code, err := record(ctx, hc, url, n, "Bearer "+token)
		switch {
		case err == nil && code == http.StatusOK:
			side.Imported.Add(1)
		default:
			side.Failed.Add(1)
			if code == http.StatusUnauthorized {
				first401.CompareAndSwap(0, int64(time.Since(start)))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// jobtokenWorker imports with the token file of its pod, through pkg/tokenfile: the
// transport sends the current token and, after a 401, retries once with a newer one.
// A worker that still gets a 401 waits for the next token and tries the record again.
func jobtokenWorker(ctx context.Context, url, dir string, records int, interval time.Duration, side *Side, seen *tokenSet) {
	if err := poll(ctx, 2*time.Minute, func() bool {
		_, err := os.Stat(filepath.Join(dir, jobtokenv1alpha1.KeyAccessToken))
		return err == nil
	}); err != nil {
		side.Failed.Add(int64(records))
		return
	}
	src, err := tokenfile.New(dir)
	if err != nil {
		side.Failed.Add(int64(records))
		return
	}
	tr := tokenfile.NewTransport(src, countingTransport{base: http.DefaultTransport, side: side})
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := range records {
		ok := false
		for attempt := 0; attempt < 4 && !ok; attempt++ {
			before, _ := src.Token()
			seen.add(before.Value)
			code, err := record(ctx, hc, url, n, "")
			if err == nil && code == http.StatusOK {
				ok = true
				if attempt > 0 {
					side.Retried.Add(1)
				}
				break
			}
			if code != http.StatusUnauthorized {
				continue
			}
			// Wait (bounded) for the operator's next token to reach the file.
			_ = poll(ctx, 30*time.Second, func() bool {
				now, err := src.Token()
				return err == nil && now.Value != before.Value
			})
		}
		if ok {
			side.Imported.Add(1)
		} else {
			side.Failed.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	side.Retried.Add(tr.Retries())
}

// tokenSet remembers every token the job handed out, to check revocation at the end.
type tokenSet struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (s *tokenSet) add(t string) {
	if t == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		s.tokens = map[string]bool{}
	}
	s.tokens[t] = true
}

func (s *tokenSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

func (s *tokenSet) addSecret(ctx context.Context, cl client.Client) {
	sec := &corev1.Secret{}
	if cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: jobName + "-token"}, sec) == nil {
		s.add(string(sec.Data[jobtokenv1alpha1.KeyAccessToken]))
	}
}

// readRefreshToken reads the job's current refresh token from the vault, to verify at
// the end that it was revoked too.
func readRefreshToken(ctx context.Context, cl client.Client) string {
	list := &corev1.SecretList{}
	if err := cl.List(ctx, list, client.InNamespace(vaultNamespace), client.MatchingLabels{jobtokenv1alpha1.LabelImportJobName: jobName}); err != nil {
		return ""
	}
	for _, s := range list.Items {
		if rt := s.Data[tokenchain.KeyRefreshToken]; len(rt) > 0 {
			return string(rt)
		}
	}
	return ""
}
