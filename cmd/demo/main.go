// Command demo runs a long import twice on an embedded control plane and the built-in
// development issuer: once with the submitting user's token handed to the workers (the
// seed's failure), once with jobtoken. See `demo --help`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jobtoken/jobtoken/internal/demo"
)

func main() {
	var o demo.Options
	check := flag.Bool("check", false, "Exit non-zero unless the jobtoken side lost no record, the baseline saw 401s, the session maximum was crossed and every token was revoked.")
	flag.DurationVar(&o.Duration, "duration", 4*time.Minute, "How long the import takes.")
	flag.DurationVar(&o.AccessTTL, "access-ttl", 20*time.Second, "Access-token lifetime at the development issuer.")
	flag.DurationVar(&o.SessionMax, "session-max", 2*time.Minute, "Session maximum at the development issuer: every refresh chain ends then.")
	flag.IntVar(&o.Workers, "workers", 3, "Worker pods per side.")
	flag.IntVar(&o.Records, "records", 1200, "Records to import per side.")
	flag.DurationVar(&o.SyncDelay, "sync-delay", 60*time.Second, "The kubelet stand-in's periodic Secret sync (pods nudged by the operator sync at once).")
	flag.DurationVar(&o.PropagationBudget, "propagation-budget", 5*time.Second, "The ImportJob's propagation budget.")
	flag.DurationVar(&o.ProgressEvery, "progress", 15*time.Second, "How often to print progress.")
	flag.StringVar(&o.WorkDir, "workdir", "bin/demo", "Directory for the manager's log and the pods' token files.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := demo.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	o.Defaults()
	rep.Print(os.Stdout, o)
	if problems := rep.Problems(); len(problems) > 0 {
		fmt.Println("\nNot shown by this run:")
		for _, p := range problems {
			fmt.Println("  -", p)
		}
		if *check {
			os.Exit(1)
		}
		return
	}
	fmt.Println("\nShown: the baseline loses records to 401s; the jobtoken side loses none, crosses the session maximum by re-minting, and every token is revoked at the end.")
}
