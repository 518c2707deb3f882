//go:build chaos

package chaos

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/testenv"
)

// TestChaosShort is the short chaos run of `make test`: a 2-minute kill -9 soak, an issuer
// outage of three (short) token lifetimes and a leader failover round of each kind. The
// long run is `make chaos`.
func TestChaosShort(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "manager")
	if err := testenv.BuildManager(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	// Token lifetimes leave the rotation a window of seconds, as in production where it is
	// minutes: 10s tokens rotated at half their life with a 2s budget give each rotation
	// 2-4s before its deadline, so a miss means a rotation really was late (a schedule
	// past the budget, a backoff past the deadline, a herd the manager cannot clear), not
	// that a loaded machine took a few hundred milliseconds longer. The replicas' 20s
	// tokens leave room for a failover (a 4s lease, then the new leader's start).
	res, err := Run(ctx, Options{
		Jobs: 50, SoakDuration: 2 * time.Minute, KillEvery: 10 * time.Second,
		OutageTTL: 10 * time.Second, ReplicaTTL: 20 * time.Second, ReplicaRounds: 3, ReplicaPeriod: 8 * time.Second,
		ManagerBin: bin, WorkDir: dir, Out: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Markdown("go test ./internal/chaos -run TestChaosShort"))
	for _, f := range res.Failures() {
		t.Error(f)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
