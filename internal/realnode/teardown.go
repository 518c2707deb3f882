package realnode

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stop stops every component and removes everything the cluster made on the host. It
// may be called more than once.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	c.logf("stopping")
	// The kubelet first, so that it restarts nothing; then the containers, while
	// containerd still answers; then the rest in reverse order of start.
	for _, p := range c.procs {
		if p.name == "kubelet" {
			p.stop(10 * time.Second)
		}
	}
	c.killContainers()
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(10 * time.Second)
	}
	c.procs = nil
	c.cleanup()
	c.logf("stopped; host state removed")
}

// killContainers kills every task containerd runs for the kubelet.
func (c *Cluster) killContainers() {
	if c.containerdSock == "" {
		return
	}
	ctr := c.bin("ctr")
	out, err := run(ctr, "--address", c.containerdSock, "-n", "k8s.io", "tasks", "ls", "-q")
	if err != nil {
		return
	}
	ids := strings.Fields(out)
	for _, id := range ids {
		_, _ = run(ctr, "--address", c.containerdSock, "-n", "k8s.io", "tasks", "kill", "-a", "-s", "SIGKILL", id)
	}
	for _, id := range ids {
		_, _ = run(ctr, "--address", c.containerdSock, "-n", "k8s.io", "tasks", "rm", "-f", id)
	}
}

// cleanup removes what a run leaves on the host, whether it stopped cleanly or not:
// processes started from the cluster's binaries, the pods' cgroups, kube-proxy's iptables
// rules, mounts under the work directory (secret volumes, network namespaces, container
// root filesystems), the bridge, and the work directory itself.
func (c *Cluster) cleanup() {
	cfg := c.cfg
	// Processes of a previous run, by pid file, only when their executable is ours.
	runDir := filepath.Join(cfg.WorkDir, "run")
	ours := []string{}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "runc", "kube-apiserver", "etcd"} {
		ours = append(ours, c.bin(b))
	}
	if ents, err := os.ReadDir(runDir); err == nil {
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".pid") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(runDir, e.Name()))
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				continue
			}
			exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
			if err == nil && slices.Contains(ours, strings.TrimSuffix(exe, " (deleted)")) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Shims and runc leave the process groups on purpose. Only the node's own binaries
	// are looked for by executable: kube-apiserver and etcd are the ones the tests and the
	// demo run too, so those are stopped only through the pid files above.
	var nodeOnly []string
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "runc"} {
		nodeOnly = append(nodeOnly, c.bin(b))
	}
	if n := killByExe(nodeOnly...); n > 0 {
		c.logf("killed %d leftover processes", n)
		time.Sleep(500 * time.Millisecond)
	}
	killCgroups("kubepods")

	if ipt, err := os.Stat(c.bin("kube-proxy")); err == nil && !ipt.IsDir() {
		_, _ = run(c.bin("kube-proxy"), "--cleanup")
	}

	removeKubeChains()
	unmountUnder(cfg.WorkDir)

	if _, err := os.Stat(filepath.Join("/sys/class/net", cfg.Bridge)); err == nil {
		_, _ = run("ip", "link", "delete", cfg.Bridge)
	}
	fwd := c.ipForward
	if fwd == "" {
		if b, err := os.ReadFile(filepath.Join(runDir, "ip_forward")); err == nil {
			fwd = strings.TrimSpace(string(b))
		}
	}
	if fwd == "0" || fwd == "1" {
		_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(fwd), 0o644) //nolint:gosec // a sysctl: the mode is not used
	}
	if err := os.RemoveAll(cfg.WorkDir); err != nil {
		c.logf("remove %s: %v", cfg.WorkDir, err)
	}
	if left := removeKubeChains(); len(left) > 0 {
		c.logf("iptables chains left after cleanup: %s", strings.Join(left, ", "))
	}
}

// killCgroups kills every process in the cgroup trees named name (in each cgroup v1
// hierarchy and in the unified one) and removes the cgroups, deepest first.
func killCgroups(name string) {
	var roots []string
	for _, pattern := range []string{"/sys/fs/cgroup/" + name, "/sys/fs/cgroup/*/" + name} {
		m, _ := filepath.Glob(pattern)
		roots = append(roots, m...)
	}
	for attempt := 0; attempt < 10; attempt++ {
		var dirs []string
		for _, r := range roots {
			_ = filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
		}
		if len(dirs) == 0 {
			return
		}
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// unmountUnder unmounts every mount point under dir, deepest first (lazily, so that a
// busy one does not stop the rest).
func unmountUnder(dir string) {
	prefix := filepath.Clean(dir) + "/"
	for attempt := 0; attempt < 5; attempt++ {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var points []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 5 {
				continue
			}
			mp := unescapeMount(fields[4])
			if strings.HasPrefix(mp, prefix) {
				points = append(points, mp)
			}
		}
		_ = f.Close()
		if len(points) == 0 {
			return
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, mp := range points {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeKubeChains removes the iptables chains the kubelet makes (KUBE-FIREWALL, which
// drops packets from other hosts to 127.0.0.0/8, and the canary chains) and whatever
// kube-proxy --cleanup left, with the rules that jump to them. No other program on a
// machine that runs this cluster makes KUBE- chains.
func removeKubeChains() (left []string) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := run(ipt, "-w", "5", "-t", table, "-S")
			if err != nil {
				continue
			}
			var chains []string
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-"):
					chains = append(chains, f[1])
				case len(f) > 3 && f[0] == "-A" && !strings.HasPrefix(f[1], "KUBE-") && slices.Contains(f, "-j") && strings.HasPrefix(f[slices.Index(f, "-j")+1], "KUBE-"):
					_, _ = run(ipt, append([]string{"-w", "5", "-t", table, "-D"}, unquote(f[1:])...)...)
				}
			}
			for _, ch := range chains {
				_, _ = run(ipt, "-w", "5", "-t", table, "-F", ch)
			}
			for _, ch := range chains {
				if _, err := run(ipt, "-w", "5", "-t", table, "-X", ch); err != nil {
					left = append(left, fmt.Sprintf("%s %s %s (%v)", ipt, table, ch, err))
				}
			}
		}
	}
	return left
}

// unquote joins the quoted words of an iptables -S line ("block incoming ...") back into
// single arguments.
func unquote(f []string) []string {
	var out []string
	for i := 0; i < len(f); i++ {
		w := f[i]
		if strings.HasPrefix(w, "\"") && (len(w) == 1 || !strings.HasSuffix(w, "\"")) {
			parts := []string{w}
			for i+1 < len(f) {
				i++
				parts = append(parts, f[i])
				if strings.HasSuffix(f[i], "\"") {
					break
				}
			}
			w = strings.Join(parts, " ")
		}
		out = append(out, strings.Trim(w, "\""))
	}
	return out
}
