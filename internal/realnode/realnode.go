// Package realnode runs a real single-node Kubernetes cluster on this machine: etcd,
// kube-apiserver (with the service-account issuer and signing key a real cluster has),
// kube-controller-manager, kube-scheduler, containerd with runc, the kubelet, kube-proxy in
// iptables mode and a CNI bridge. Every server listens on loopback or on the cluster's
// private bridge. It needs root on Linux; the binaries come from hack/build-node.sh and
// hack/build-envtest.sh.
//
// Stop tears everything down (processes, container shims, mounts, network namespaces,
// pod cgroups, kube-proxy's iptables rules, the bridge), and Start does the same for what
// a previous run left behind, so a crash of the runner costs nothing on the next run.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says where the binaries are and how the cluster's network is laid out.
type Config struct {
	// NodeBinDir holds kubelet, kube-controller-manager, kube-scheduler, kube-proxy,
	// containerd, containerd-shim-runc-v2, ctr and runc (hack/build-node.sh).
	NodeBinDir string
	// K8sBinDir holds kube-apiserver, etcd and kubectl (hack/build-envtest.sh).
	K8sBinDir string
	// WorkDir holds the cluster's state; it is emptied at Start and removed at Stop.
	WorkDir string
	// CNIBinDir holds the bridge, host-local and loopback plugins (Debian's
	// containernetworking-plugins).
	CNIBinDir string
	// Bridge is the name of the private bridge; BridgeCIDR its address and the pods'
	// subnet (the first address is the host's, on which the API server listens).
	Bridge     string
	BridgeCIDR string
	// ServiceCIDR is the range of Service cluster IPs.
	ServiceCIDR string
	// NodeName is the node's name.
	NodeName string
	// Images are OCI archives imported into containerd before the kubelet starts;
	// SandboxImage names the pause image among them.
	Images       []string
	SandboxImage string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(os.TempDir(), "jobtoken-node")
	}
	if c.CNIBinDir == "" {
		c.CNIBinDir = "/usr/lib/cni"
	}
	if c.Bridge == "" {
		c.Bridge = "jtbr0"
	}
	if c.BridgeCIDR == "" {
		c.BridgeCIDR = "10.217.0.1/24"
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = "10.218.0.0/24"
	}
	if c.NodeName == "" {
		c.NodeName = "jobtoken-node"
	}
	if c.SandboxImage == "" {
		c.SandboxImage = "docker.io/jobtoken/pause:dev"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Cluster is a running single-node cluster.
type Cluster struct {
	cfg    Config
	logDir string
	runDir string
	pki    *pki

	// HostIP is the host's address on the bridge: the API server, the kubelet and any
	// server the pods must reach from the host listen there.
	HostIP net.IP
	// APIServerURL is the API server's address on the bridge.
	APIServerURL string
	// AdminKubeconfig is a kubeconfig with cluster-admin rights (group system:masters).
	AdminKubeconfig string
	// RestConfig is the admin's client configuration.
	RestConfig *rest.Config
	// Clientset is the admin's client.
	Clientset kubernetes.Interface

	procs          []*proc
	containerdSock string
	ipForward      string
	started        time.Time
}

// LogDir is where each component writes its log.
func (c *Cluster) LogDir() string { return c.logDir }

func (c *Cluster) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.cfg.Log, "[node %5.1fs] %s\n", time.Since(c.started).Seconds(), fmt.Sprintf(format, args...))
}

func (c *Cluster) bin(name string) string {
	if slices.Contains([]string{"kube-apiserver", "etcd", "kubectl"}, name) {
		return filepath.Join(c.cfg.K8sBinDir, name)
	}
	return filepath.Join(c.cfg.NodeBinDir, name)
}

// Start brings the cluster up and waits until the node is Ready and the default
// ServiceAccount and the root CA ConfigMap exist. On error everything started is torn
// down again.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	cfg.Defaults()
	c = &Cluster{cfg: cfg, started: time.Now()}
	if os.Geteuid() != 0 {
		return nil, errors.New("a real node needs root (containerd, runc, the kubelet's mounts and cgroups, the bridge)")
	}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			return nil, fmt.Errorf("%s is missing (make node envtest): %w", b, err)
		}
	}
	for _, b := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cfg.CNIBinDir, b)); err != nil {
			return nil, fmt.Errorf("CNI plugin %s is missing (Debian containernetworking-plugins): %w", b, err)
		}
	}
	// What a previous run left behind (a crash, a kill -9 of the runner).
	c.cleanup()
	defer func() {
		if err != nil {
			c.logf("start failed, tearing down: %v", err)
			c.Stop()
			c = nil
		}
	}()
	c.logDir = filepath.Join(cfg.WorkDir, "logs")
	c.runDir = filepath.Join(cfg.WorkDir, "run")
	for _, d := range []string{c.logDir, c.runDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return c, err
		}
	}
	ip, subnet, err := net.ParseCIDR(cfg.BridgeCIDR)
	if err != nil {
		return c, fmt.Errorf("bridge CIDR: %w", err)
	}
	c.HostIP = ip
	if err := c.setupBridge(); err != nil {
		return c, err
	}
	if err := c.startControlPlane(ctx); err != nil {
		return c, err
	}
	if err := c.startContainerd(ctx, subnet); err != nil {
		return c, err
	}
	if err := c.startNode(ctx, subnet); err != nil {
		return c, err
	}
	c.logf("cluster ready in %s", time.Since(c.started).Round(100*time.Millisecond))
	return c, nil
}

func (c *Cluster) setupBridge() error {
	if _, err := run("ip", "link", "add", c.cfg.Bridge, "type", "bridge"); err != nil {
		return err
	}
	if _, err := run("ip", "addr", "add", c.cfg.BridgeCIDR, "dev", c.cfg.Bridge); err != nil {
		return err
	}
	if _, err := run("ip", "link", "set", c.cfg.Bridge, "up"); err != nil {
		return err
	}
	// The bridge plugin turns IPv4 forwarding on for its gateway; it is put back at Stop.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		c.ipForward = strings.TrimSpace(string(b))
		_ = os.WriteFile(filepath.Join(c.runDir, "ip_forward"), b, 0o600) //nolint:gosec // G703: runDir is the configured work directory
	}
	c.logf("bridge %s at %s", c.cfg.Bridge, c.cfg.BridgeCIDR)
	return nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	p, err := newPKI(filepath.Join(c.cfg.WorkDir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	_, svcNet, err := net.ParseCIDR(c.cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	svcIP := slices.Clone(svcNet.IP.To4())
	svcIP[3]++
	if _, _, err := p.issue("apiserver", "kube-apiserver", nil,
		[]net.IP{c.HostIP, svcIP, net.ParseIP("127.0.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}); err != nil {
		return err
	}
	if _, _, err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil); err != nil {
		return err
	}
	if _, _, err := p.issue("kubelet-serving", "system:node:"+c.cfg.NodeName, []string{"system:nodes"}, []net.IP{c.HostIP}, []string{c.cfg.NodeName}); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}

	etcdPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	peerPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if _, err := c.start("etcd", c.bin("etcd"),
		"--data-dir", filepath.Join(c.cfg.WorkDir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync", "--quota-backend-bytes", "2147483648"); err != nil {
		return err
	}

	apiPort, err := freePort(c.HostIP.String())
	if err != nil {
		return err
	}
	c.APIServerURL = fmt.Sprintf("https://%s", net.JoinHostPort(c.HostIP.String(), fmt.Sprint(apiPort)))
	api, err := c.start("kube-apiserver", c.bin("kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", c.HostIP.String(), "--advertise-address", c.HostIP.String(),
		"--secure-port", fmt.Sprint(apiPort),
		"--cert-dir", filepath.Join(c.cfg.WorkDir, "apiserver-certs"),
		"--tls-cert-file", p.path("apiserver.crt"), "--tls-private-key-file", p.path("apiserver.key"),
		"--client-ca-file", p.path("ca.crt"),
		"--kubelet-client-certificate", p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", p.path("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", p.path("ca.crt"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-cluster-ip-range", c.cfg.ServiceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.path("sa.pub"),
		"--service-account-signing-key-file", p.path("sa.key"),
		"--api-audiences", "https://kubernetes.default.svc.cluster.local",
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=true",
		"--profiling=false")
	if err != nil {
		return err
	}
	admin, err := p.kubeconfig("admin", c.APIServerURL, "jobtoken-node-admin", "system:masters")
	if err != nil {
		return err
	}
	c.AdminKubeconfig = admin
	rc, err := clientcmd.BuildConfigFromFlags("", admin)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 100
	c.RestConfig = rc
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	c.Clientset = cs
	if err := c.waitFor(ctx, "the API server to be healthy", 90*time.Second, []*proc{api}, func() bool {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && strings.TrimSpace(string(body)) == "ok"
	}); err != nil {
		return err
	}
	c.logf("kube-apiserver ready at %s", c.APIServerURL)

	kcmPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	kcmKubeconfig, err := p.kubeconfig("kube-controller-manager", c.APIServerURL, "system:kube-controller-manager")
	if err != nil {
		return err
	}
	if _, err := c.start("kube-controller-manager", c.bin("kube-controller-manager"),
		"--kubeconfig", kcmKubeconfig,
		"--authentication-kubeconfig", kcmKubeconfig, "--authorization-kubeconfig", kcmKubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(kcmPort),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", p.path("sa.key"),
		"--root-ca-file", p.path("ca.crt"),
		"--cluster-signing-cert-file", p.path("ca.crt"), "--cluster-signing-key-file", p.path("ca.key"),
		"--allocate-node-cidrs=false",
		"--profiling=false"); err != nil {
		return err
	}
	schedPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	schedKubeconfig, err := p.kubeconfig("kube-scheduler", c.APIServerURL, "system:kube-scheduler")
	if err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", c.bin("kube-scheduler"),
		"--kubeconfig", schedKubeconfig,
		"--authentication-kubeconfig", schedKubeconfig, "--authorization-kubeconfig", schedKubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(schedPort),
		"--leader-elect=false", "--profiling=false"); err != nil {
		return err
	}
	return nil
}

func (c *Cluster) startContainerd(ctx context.Context, subnet *net.IPNet) error {
	dir := filepath.Join(c.cfg.WorkDir, "containerd")
	cniConf := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniConf, 0o700); err != nil {
		return err
	}
	ones, _ := subnet.Mask.Size()
	// The bridge plugin adopts the bridge made at Start; the host keeps the first
	// address and pods get the rest. No masquerade: pods only talk to the host.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "jobtoken-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": "%s/%d", "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, c.cfg.Bridge, filepath.Join(dir, "ipam"), subnet.IP, ones, c.HostIP)
	if err := os.WriteFile(filepath.Join(cniConf, "10-jobtoken.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	c.containerdSock = filepath.Join(dir, "containerd.sock")
	// restrict_oom_score_adj: processes here may not lower their OOM score, which runc
	// would otherwise try for every sandbox. Network namespaces are mounted under the
	// state directory so that teardown finds all of them.
	conf := fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = %q
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = [%q]
  conf_dir = %q

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %q

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.containerdSock, c.containerdSock+".ttrpc",
		c.bin("runc"), c.cfg.CNIBinDir, cniConf, c.cfg.SandboxImage)
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	ctrd, err := c.start("containerd", c.bin("containerd"), "--config", confPath)
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd to serve", 60*time.Second, []*proc{ctrd}, func() bool {
		_, err := run(c.bin("ctr"), "--address", c.containerdSock, "version")
		return err == nil
	}); err != nil {
		return err
	}
	c.logf("containerd ready")
	for _, img := range c.cfg.Images {
		if err := c.LoadImage(img); err != nil {
			return err
		}
	}
	return nil
}

// LoadImage imports an OCI (or docker) archive into the node's containerd, in the
// namespace the kubelet uses.
func (c *Cluster) LoadImage(archive string) error {
	out, err := run(c.bin("ctr"), "--address", c.containerdSock, "-n", "k8s.io", "images", "import", "--platform", "linux/amd64", archive)
	if err != nil {
		return fmt.Errorf("import %s: %w", archive, err)
	}
	c.logf("imported %s: %s", filepath.Base(archive), strings.Join(strings.Fields(out), " "))
	return nil
}

func (c *Cluster) cgroupV1() bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		return true
	}
	const cgroup2Magic = 0x63677270
	return st.Type != cgroup2Magic
}

func (c *Cluster) startNode(ctx context.Context, subnet *net.IPNet) error {
	p := c.pki
	kubeletDir := filepath.Join(c.cfg.WorkDir, "kubelet")
	if err := os.MkdirAll(kubeletDir, 0o700); err != nil {
		return err
	}
	kubeletKubeconfig, err := p.kubeconfig("kubelet", c.APIServerURL, "system:node:"+c.cfg.NodeName, "system:nodes")
	if err != nil {
		return err
	}
	kubeletPort, err := freePort(c.HostIP.String())
	if err != nil {
		return err
	}
	// failCgroupV1: this host may be cgroup v1, where the kubelet only warns when told so.
	failCgroupV1 := "true"
	if c.cgroupV1() {
		failCgroupV1 = "false"
	}
	// Image garbage collection is off: the images are imported, and nothing can be pulled.
	// Eviction is off: the cluster lives for minutes on a shared machine's disk.
	kubeletConf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: %s
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "0%%"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
  nodefs.inodesFree: "0%%"
registerNode: true
serializeImagePulls: false
maxPods: 40
resolvConf: ""
clusterDomain: cluster.local
enableDebuggingHandlers: true
`, c.HostIP, kubeletPort, p.path("kubelet-serving.crt"), p.path("kubelet-serving.key"), p.path("ca.crt"),
		failCgroupV1, c.containerdSock, filepath.Join(c.cfg.WorkDir, "pod-logs"))
	confPath := filepath.Join(kubeletDir, "config.yaml")
	if err := os.WriteFile(confPath, []byte(kubeletConf), 0o600); err != nil {
		return err
	}
	kubelet, err := c.start("kubelet", c.bin("kubelet"),
		"--config", confPath, "--kubeconfig", kubeletKubeconfig,
		"--root-dir", filepath.Join(kubeletDir, "root"),
		"--hostname-override", c.cfg.NodeName, "--node-ip", c.HostIP.String())
	if err != nil {
		return err
	}

	proxyKubeconfig, err := p.kubeconfig("kube-proxy", c.APIServerURL, "system:kube-proxy")
	if err != nil {
		return err
	}
	ones, _ := subnet.Mask.Size()
	healthzPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	metricsPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	proxyConf := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
clusterCIDR: %s/%d
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
nodePortAddresses: ["%s/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, proxyKubeconfig, c.cfg.NodeName, subnet.IP, ones, healthzPort, metricsPort, c.HostIP)
	proxyConfPath := filepath.Join(c.cfg.WorkDir, "kube-proxy.yaml")
	if err := os.WriteFile(proxyConfPath, []byte(proxyConf), 0o600); err != nil {
		return err
	}
	proxy, err := c.start("kube-proxy", c.bin("kube-proxy"), "--config", proxyConfPath)
	if err != nil {
		return err
	}

	cs := c.Clientset
	if err := c.waitFor(ctx, "the node to be Ready", 120*time.Second, []*proc{kubelet, proxy}, func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, c.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}); err != nil {
		return err
	}
	c.logf("node %s Ready", c.cfg.NodeName)
	if err := c.waitFor(ctx, "the default ServiceAccount and kube-root-ca.crt", 60*time.Second, nil, func() bool {
		_, err1 := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		_, err2 := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err1 == nil && err2 == nil
	}); err != nil {
		return err
	}
	return nil
}

// waitFor polls cond every 250ms until it holds, ctx ends, timeout passes or one of the
// watched processes exits (then its log's tail is in the error).
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, watch []*proc, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		for _, p := range watch {
			if ended, err := p.exited(); ended {
				return fmt.Errorf("%s exited (%v) while waiting for %s; its log ends:\n%s", p.name, err, what, p.tail(20))
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, what)
			for _, p := range watch {
				msg += fmt.Sprintf("\n--- %s log:\n%s", p.name, p.tail(15))
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// CheckAlive returns an error naming the first component that has exited.
func (c *Cluster) CheckAlive() error {
	for _, p := range c.procs {
		if ended, err := p.exited(); ended {
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, err, p.tail(20))
		}
	}
	return nil
}
