package chaos

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobtoken/jobtoken/internal/bench"
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
	if err := bench.BuildManager(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Options{
		Jobs: 50, SoakDuration: 2 * time.Minute, KillEvery: 10 * time.Second,
		OutageTTL: 6 * time.Second, ReplicaTTL: 20 * time.Second, ReplicaRounds: 3, ReplicaPeriod: 8 * time.Second,
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
