//go:build integration

package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoCheck is the short form of `make demo --check`: the baseline loses records to
// 401s, the jobtoken side loses none, crosses the session maximum by re-minting, and
// every token it handed out is inactive at the issuer afterwards.
func TestDemoCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	o := Options{
		Duration: 50 * time.Second, AccessTTL: 8 * time.Second, SessionMax: 25 * time.Second,
		Workers: 2, Records: 300, SyncDelay: 30 * time.Second, PropagationBudget: 3 * time.Second,
		WorkDir: t.TempDir(), Out: &out, ProgressEvery: 10 * time.Second,
	}
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	rep.Print(&out, o)
	t.Log("\n" + out.String())
	if problems := rep.Problems(); len(problems) > 0 {
		t.Errorf("the demo did not prove its point:\n  %s", strings.Join(problems, "\n  "))
	}
	if rep.Rotations < 3 {
		t.Errorf("only %d rotations in a run of %s with %s tokens", rep.Rotations, o.Duration, o.AccessTTL)
	}
}
