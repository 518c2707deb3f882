// Command e2e runs the end-to-end check on a real single-node cluster (root, Linux): the
// manager image deployed with config/default, real worker containers reading the token
// file, the measured propagation of rotated tokens with pod nudging on and off, a forced
// deletion of the leading manager pod, and revocation when the Job controller ends each
// Job. It prints a table and exits 1 on any failure. Run it with make e2e.
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

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/jobtoken/jobtoken/internal/e2e"
)

func main() {
	var o e2e.Options
	flag.StringVar(&o.NodeBinDir, "node-bin", "", "directory of kubelet, containerd, runc, ... (make node-bins)")
	flag.StringVar(&o.K8sBinDir, "k8s-bin", "", "directory of kube-apiserver, etcd (make envtest)")
	flag.StringVar(&o.ImagesDir, "images", "bin/images", "directory of the OCI archives (make image); several separated by commas, e.g. dist/images,bin/images for a release's images and the pause image")
	flag.StringVar(&o.Kubectl, "kubectl", "", "kubectl (default <k8s-bin>/kubectl)")
	flag.StringVar(&o.RepoRoot, "repo", ".", "repository root (config/default is applied from there)")
	flag.StringVar(&o.WorkDir, "work-dir", "bin/e2e-run", "where the run's node log and the components' logs are kept")
	flag.DurationVar(&o.Duration, "duration", 0, "how long the main job's workers import (default 3m)")
	flag.IntVar(&o.Workers, "workers", 0, "worker pods of the main job (default 3)")
	flag.Float64Var(&o.Rate, "rate", 0, "records per second per worker (default 5)")
	flag.DurationVar(&o.AccessTTL, "access-ttl", 0, "access-token lifetime of the main job's issuer (default 20s)")
	flag.DurationVar(&o.Budget, "budget", 0, "propagation budget of the main job (default 5s)")
	flag.DurationVar(&o.OffAccessTTL, "off-access-ttl", 0, "access-token lifetime for the nudging-off job (default 150s)")
	flag.DurationVar(&o.OffBudget, "off-budget", 0, "propagation budget of the nudging-off job (default 120s)")
	var installs string
	flag.StringVar(&installs, "install", "", "instead of the full run, install the operator each of these ways in turn (comma-separated: helm, release), run one ImportJob and uninstall")
	flag.StringVar(&o.Helm, "helm", "", "helm binary for --install=helm (make helm)")
	flag.StringVar(&o.Chart, "chart", "", "for --install=helm: the chart, default charts/jobtoken (told --manager-image); a packaged chart (dist/jobtoken-*.tgz) is rendered with its own default image, which must be --manager-image")
	flag.StringVar(&o.ReleaseManifest, "release-manifest", "", "for --install=release: apply this install.yaml (make release) instead of writing one with hack/release.sh; it must name the --manager-image")
	flag.StringVar(&o.ManagerImage, "manager-image", "", "the manager image among --images (default jobtoken/manager:dev)")
	flag.DurationVar(&o.InstallDuration, "install-duration", 0, "how long the worker of each --install phase imports (default 45s)")
	flag.Parse()
	if o.NodeBinDir == "" || o.K8sBinDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	if o.Kubectl == "" {
		o.Kubectl = filepath.Join(o.K8sBinDir, "kubectl")
	}
	// The node's configuration files name these binaries, and the processes that read
	// them run in other directories: make every path absolute.
	dirs := strings.Split(o.ImagesDir, ",")
	paths := []*string{&o.NodeBinDir, &o.K8sBinDir, &o.WorkDir, &o.ReleaseManifest}
	for _, exe := range []*string{&o.Kubectl, &o.Helm} {
		if strings.ContainsRune(*exe, filepath.Separator) { // else found on PATH
			paths = append(paths, exe)
		}
	}
	for i := range dirs {
		paths = append(paths, &dirs[i])
	}
	if err := absolute(paths...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	o.ImagesDir = strings.Join(dirs, ",")
	if err := os.MkdirAll(o.WorkDir, 0o750); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	o.Out = os.Stdout
	// The run talks to the API server with controller-runtime's client only; its log
	// would otherwise complain, with a stack, that no logger was set.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if installs != "" {
		rep, err := e2e.RunInstalls(ctx, o, strings.Split(installs, ","))
		if rep != nil && len(rep.Phases) > 0 {
			rep.Print(os.Stdout, o)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: FAIL:", err)
			os.Exit(1)
		}
		if len(rep.Problems) > 0 {
			os.Exit(1)
		}
		return
	}
	rep, err := e2e.Run(ctx, o)
	if rep != nil && rep.Main != nil {
		rep.Print(os.Stdout, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: FAIL:", err)
		os.Exit(1)
	}
	if len(rep.Problems) > 0 {
		os.Exit(1)
	}
}

// absolute makes each non-empty path absolute.
func absolute(paths ...*string) error {
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}
