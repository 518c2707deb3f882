// Command chaos runs the kill -9 soak, the issuer outage and the two-replica failover
// against the real kube-apiserver and etcd (bin/k8s) with the cmd/manager binary, and
// writes the table into docs/benchmarks.md. It is what `make chaos` runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jobtoken/jobtoken/internal/chaos"
	"github.com/jobtoken/jobtoken/internal/harness"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

func main() {
	var o chaos.Options
	var doc, workDir, scenarios string
	flag.StringVar(&scenarios, "scenarios", "soak,outage,replicas", "scenarios to run, comma-separated")
	flag.IntVar(&o.Jobs, "jobs", 200, "ImportJobs of the soak (and, by default, of the other scenarios)")
	flag.DurationVar(&o.SoakTTL, "soak-ttl", 0, "access-token TTL of the soak (default 10s)")
	flag.DurationVar(&o.SoakDuration, "soak", 0, "soak duration (default 10m)")
	flag.DurationVar(&o.KillEvery, "kill-every", 0, "SIGKILL the manager this often (default 10s)")
	flag.IntVar(&o.OutageJobs, "outage-jobs", 0, "ImportJobs of the outage (default --jobs)")
	flag.DurationVar(&o.OutageTTL, "outage-ttl", 0, "access-token TTL of the outage (default 10s)")
	flag.IntVar(&o.OutageTTLs, "outage-ttls", 0, "outage length in TTLs (default 3)")
	flag.IntVar(&o.ReplicaJobs, "replica-jobs", 0, "ImportJobs of the replicas scenario (default --jobs)")
	flag.DurationVar(&o.ReplicaTTL, "replica-ttl", 0, "access-token TTL of the replicas scenario (default 20s)")
	flag.IntVar(&o.ReplicaRounds, "replica-rounds", 0, "leader disturbances (default 9)")
	flag.DurationVar(&o.PropagationBudget, "propagation-budget", 0, "the ImportJobs' propagation budget (default 2s)")
	flag.StringVar(&o.Fraction, "fraction", "", "the ImportJobs' rotation fraction (default 0.5)")
	flag.StringVar(&o.ManagerBin, "manager-bin", "", "cmd/manager binary (default: built into bin/manager)")
	flag.StringVar(&doc, "doc", "docs/benchmarks.md", "Markdown file to write the table into (empty: print only)")
	flag.StringVar(&workDir, "workdir", "", "work directory for logs (default bin/chaos-runs)")
	flag.Parse()
	o.Scenarios = strings.Split(scenarios, ",")

	root, err := testenv.RepoRoot()
	if err != nil {
		fail(err)
	}
	if workDir == "" {
		workDir = filepath.Join(root, "bin", "chaos-runs")
	}
	o.WorkDir = workDir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.ManagerBin == "" {
		o.ManagerBin = filepath.Join(root, "bin", "manager")
		fmt.Println("building cmd/manager into", o.ManagerBin)
		if err := testenv.BuildManager(ctx, root, o.ManagerBin); err != nil {
			fail(err)
		}
	}
	res, err := chaos.Run(ctx, o)
	if err != nil {
		fail(err)
	}
	md := res.Markdown(harness.MakeCommand("chaos", "CHAOS_FLAGS", "doc", "workdir", "manager-bin"))
	fmt.Println()
	fmt.Println(md)
	if doc != "" {
		if !filepath.IsAbs(doc) {
			doc = filepath.Join(root, doc)
		}
		if err := harness.UpdateDocSection(doc, "chaos", md); err != nil {
			fail(err)
		}
		fmt.Println("wrote section chaos of", doc)
	}
	if f := res.Failures(); len(f) > 0 {
		fmt.Println("targets missed:")
		for _, x := range f {
			fmt.Println(" -", x)
		}
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(1)
}
