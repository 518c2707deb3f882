// Command realnode runs a real single-node Kubernetes cluster on this machine (root,
// Linux) until interrupted: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kube-proxy, containerd and the kubelet, with the OCI archives of --images imported. It
// prints the admin kubeconfig's path once the node is Ready, and removes everything it
// made on the host when it stops.
//
//	make node
//	kubectl --kubeconfig /tmp/jobtoken-node/pki/admin.kubeconfig get nodes
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/jobtoken/jobtoken/internal/realnode"
)

func main() {
	var cfg realnode.Config
	images := flag.String("images", "bin/images", "directory of OCI archives to import (pause.tar is the sandbox image)")
	flag.StringVar(&cfg.NodeBinDir, "node-bin", "", "directory of kubelet, containerd, runc, ... (make node-bins)")
	flag.StringVar(&cfg.K8sBinDir, "k8s-bin", "", "directory of kube-apiserver, etcd, kubectl (make envtest)")
	flag.StringVar(&cfg.WorkDir, "work-dir", "", "state directory, emptied at start and removed at stop (default $TMPDIR/jobtoken-node)")
	flag.StringVar(&cfg.BridgeCIDR, "bridge-cidr", "", "host address and pod subnet on the private bridge (default 10.217.0.1/24)")
	flag.StringVar(&cfg.ServiceCIDR, "service-cidr", "", "Service cluster IP range (default 10.218.0.0/24)")
	flag.Parse()
	if cfg.NodeBinDir == "" || cfg.K8sBinDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	archives, _ := filepath.Glob(filepath.Join(*images, "*.tar"))
	cfg.Images = archives
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := realnode.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		os.Exit(1)
	}
	fmt.Printf("kubeconfig: %s\napiserver: %s\nlogs: %s\nstop with Ctrl-C\n", c.AdminKubeconfig, c.APIServerURL, c.LogDir())
	<-ctx.Done()
	c.Stop()
}
