// Command bench measures the operator against the real kube-apiserver and etcd (bin/k8s):
// the raw Secret write floor, time to first credential, steady rotation of thousands of
// jobs and saturated rotation, and writes the table into docs/benchmarks.md. It is what
// `make bench` runs; `bench manager ...` is the manager process it starts.
//
// The table is written whatever it says; then the command exits with status 1 when a
// target was missed or could not be measured (--fail-on-missed=false: report only).
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
	"time"

	"github.com/jobtoken/jobtoken/internal/bench"
	"github.com/jobtoken/jobtoken/internal/harness"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "manager" {
		if err := harness.RunManagerRole(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench manager:", err)
			os.Exit(1)
		}
		return
	}
	var o bench.Options
	var doc, workDir string
	var failOnMissed bool
	flag.IntVar(&o.Jobs, "jobs", 1000, "ImportJobs rotating in the steady phase (5000 for the large run)")
	flag.IntVar(&o.TTFCJobs, "ttfc-jobs", 200, "ImportJobs created one at a time for time to first credential")
	flag.DurationVar(&o.TTL, "ttl", time.Minute, "access-token lifetime at the issuer")
	flag.DurationVar(&o.PropagationBudget, "propagation-budget", 10*time.Second, "the ImportJobs' propagation budget")
	flag.DurationVar(&o.Warmup, "warmup", time.Minute, "wait after the last job got its credential, before measuring")
	flag.DurationVar(&o.Steady, "steady", 3*time.Minute, "steady-rotation window")
	flag.IntVar(&o.Concurrency, "max-concurrent-reconciles", 0, "the manager's ImportJob workers (0: the controller's default)")
	flag.IntVar(&o.Namespaces, "namespaces", 10, "job namespaces")
	flag.IntVar(&o.FloorWrites, "floor-writes", 1000, "raw writes per floor measurement")
	flag.BoolVar(&o.SkipBurst, "skip-saturation", false, "skip the saturated-rotation phase")
	flag.IntVar(&o.ChurnJobs, "churn-jobs", 1000, "ImportJobs created and deleted in the memory-return phase")
	flag.IntVar(&o.ChurnIssuers, "churn-issuers", 100, "TokenIssuers created and deleted in the memory-return phase")
	flag.BoolVar(&o.SkipChurn, "skip-memory-return", false, "skip the memory-return phase")
	flag.BoolVar(&o.Profile, "profile", true, "capture CPU and heap profiles of the manager into the work directory")
	flag.StringVar(&doc, "doc", "docs/benchmarks.md", "Markdown file to write the table into (empty: print only)")
	flag.StringVar(&workDir, "workdir", "", "work directory (default bin/bench-runs/jobs-N)")
	flag.BoolVar(&failOnMissed, "fail-on-missed", true, "exit with status 1, after writing the report, when a target is missed or not measured (false: report only)")
	flag.Parse()

	root, err := testenv.RepoRoot()
	if err != nil {
		fail(err)
	}
	if workDir == "" {
		workDir = filepath.Join(root, "bin", "bench-runs", fmt.Sprintf("jobs-%d", o.Jobs))
	}
	o.WorkDir = workDir
	if o.Bin, err = os.Executable(); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err != nil {
		fail(err)
	}
	md := res.Markdown(harness.MakeCommand("bench", "BENCH_FLAGS", "doc", "workdir", "fail-on-missed"))
	fmt.Println()
	fmt.Println(md)
	if doc != "" {
		if !filepath.IsAbs(doc) {
			doc = filepath.Join(root, doc)
		}
		id := fmt.Sprintf("bench-%d", res.Options.Jobs)
		if err := harness.UpdateDocSection(doc, id, md); err != nil {
			fail(err)
		}
		fmt.Printf("wrote section %s of %s\n", id, doc)
	}
	failures := res.Failures()
	for _, t := range failures {
		fmt.Fprintf(os.Stderr, "bench: target %s: %s (%s)\n", strings.Trim(t.Verdict(), "*"), t.ID, t.Why)
	}
	if len(failures) > 0 && failOnMissed {
		stop()
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
