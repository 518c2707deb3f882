// Package harness runs what the benchmarks, the chaos runs and the end-to-end checks
// share: the real kube-apiserver and etcd the tests use (bin/k8s), the development issuer
// in-process, the manager as a child process with its API traffic counted, the fixtures
// (namespaces, ClusterTokenIssuer, ImportJobs), a tracker of every worker-Secret write,
// marking Jobs complete, bounded polling, and the report sections of docs/benchmarks.md.
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// Cluster is a running envtest control plane plus what the harness needs around it.
type Cluster struct {
	Env *testenv.Env
	// Config has no client-side rate limit (like the manager's, which relies on APF).
	Config    *rest.Config
	Client    client.Client
	Clientset kubernetes.Interface
	// Kubeconfig is a file for child managers (a system:masters user).
	Kubeconfig string
}

// StartCluster starts kube-apiserver and etcd (bin/k8s) and writes a kubeconfig for child
// processes into dir.
func StartCluster(dir string) (*Cluster, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Env: env}
	fail := func(err error) (*Cluster, error) {
		_ = env.Stop()
		return nil, err
	}
	c.Config = rest.CopyConfig(env.Config)
	c.Config.QPS, c.Config.Burst = -1, 0
	if c.Client, err = client.New(c.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return fail(err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fail(err)
	}
	user, err := env.AddUser(envtest.User{Name: "jobtoken-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(fmt.Errorf("add a user for the child managers: %w", err))
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	return c, nil
}

// Stop stops the control plane.
func (c *Cluster) Stop() error { return c.Env.Stop() }

// ControlPlanePIDs finds the etcd and kube-apiserver processes started by this process.
func ControlPlanePIDs() map[string]int {
	out := map[string]int{}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.ppid != self {
			continue
		}
		switch st.comm {
		case "etcd", "kube-apiserver":
			out[st.comm] = pid
		}
	}
	return out
}

type procStat struct {
	comm       string
	ppid       int
	cpuSeconds float64
}

// readProcStat reads /proc/PID/stat: the command, parent and CPU time (user+system).
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	open, closeIdx := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closeIdx < 0 {
		return procStat{}, errors.New("bad /proc stat")
	}
	fields := strings.Fields(s[closeIdx+2:])
	if len(fields) < 13 {
		return procStat{}, errors.New("short /proc stat")
	}
	ppid, _ := strconv.Atoi(fields[1])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	const clkTck = 100 // USER_HZ on Linux
	return procStat{comm: s[open+1 : closeIdx], ppid: ppid, cpuSeconds: (utime + stime) / clkTck}, nil
}

// CPUSeconds is the CPU time (user+system) a process has used; 0 when it is gone.
func CPUSeconds(pid int) float64 {
	st, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return st.cpuSeconds
}

// RSSBytes is a process's resident set size; 0 when it is gone.
func RSSBytes(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// Machine describes the host, for the reports.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemoryGiB float64
	GoVersion string
	Kernel    string
}

// DescribeMachine reads nproc, memory, CPU model and kernel from /proc.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemoryGiB = kb / 1024 / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB memory, Linux %s, %s, kube-apiserver and etcd %s (envtest, bin/k8s)",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.GoVersion, testenv.K8sVersion)
}

// Fixture names shared by the bench and chaos runs.
const (
	ClientID     = "bench-jobs"
	ClientSecret = "bench-jobs-secret"
	UserName     = "import-bot"
	UserPassword = "import-bot-password"
	userSecret   = "import-bot"
)

// Fixture is one run's issuer registration and job namespaces.
type Fixture struct {
	VaultNamespace string
	Namespaces     []string
	// IssuerName is the ClusterTokenIssuer the jobs use.
	IssuerName string
}

// benchNamespaceLabel marks the job namespaces of one run; the run's ClusterTokenIssuer
// allows exactly those.
const benchNamespaceLabel = "bench.jobtoken.dev/run"

// SetupFixture creates the vault namespace (with the issuer's client secret), the job
// namespaces (each with the system user's Secret) and a ClusterTokenIssuer for issuerURL.
func SetupFixture(ctx context.Context, c client.Client, prefix string, namespaces int, issuerURL string) (*Fixture, error) {
	f := &Fixture{VaultNamespace: prefix + "-vault", IssuerName: prefix}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.VaultNamespace}},
		testenv.ClientSecret(f.VaultNamespace, "issuer-client", ClientSecret),
	}
	for i := range namespaces {
		ns := fmt.Sprintf("%s-%d", prefix, i)
		f.Namespaces = append(f.Namespaces, ns)
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{benchNamespaceLabel: prefix}}},
			testenv.UserSecret(ns, userSecret, UserName, UserPassword))
	}
	objs = append(objs, &jobtokenv1alpha1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: f.IssuerName},
		Spec: jobtokenv1alpha1.ClusterTokenIssuerSpec{
			TokenIssuerSpec: testenv.DevIssuerSpec(issuerURL, ClientID, "issuer-client"),
			Allowed: jobtokenv1alpha1.ClusterIssuerAllowed{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchNamespaceLabel: prefix}},
				Grants:            []jobtokenv1alpha1.GrantType{jobtokenv1alpha1.GrantPassword},
			},
		},
	})
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return f, nil
}

// JobSpec tunes the ImportJobs a run creates.
type JobSpec struct {
	PropagationBudget time.Duration
	// Fraction and Jitter of the rotation ("" keeps the operator's defaults).
	Fraction, Jitter string
}

// ImportJob returns the i-th ImportJob of the fixture: Password grant (the system user),
// spread over the namespaces.
func (f *Fixture) ImportJob(i int, spec JobSpec) *jobtokenv1alpha1.ImportJob {
	ns := f.Namespaces[i%len(f.Namespaces)]
	job := testenv.ImportJob(ns, fmt.Sprintf("import-%05d", i), testenv.OnClusterTokenIssuer(f.IssuerName), userSecret)
	job.Spec.Rotation = jobtokenv1alpha1.RotationSpec{Fraction: spec.Fraction, Jitter: spec.Jitter}
	if spec.PropagationBudget > 0 {
		job.Spec.Rotation.PropagationBudget = &metav1.Duration{Duration: spec.PropagationBudget}
	}
	return job
}

// WaitIssuerReady waits until the ClusterTokenIssuer is Ready.
func WaitIssuerReady(ctx context.Context, c client.Client, name string, timeout time.Duration) error {
	return testenv.Poll(ctx, timeout, 200*time.Millisecond, func() bool {
		iss := &jobtokenv1alpha1.ClusterTokenIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, iss); err != nil {
			return false
		}
		return meta.IsStatusConditionTrue(iss.Status.Conditions, jobtokenv1alpha1.ConditionReady)
	})
}

// MarkJobsComplete sets the batch Jobs of the given ImportJobs Complete, as the job
// controller would (envtest has none).
func MarkJobsComplete(ctx context.Context, c client.Client, keys []client.ObjectKey, concurrency int) error {
	return ForEach(ctx, len(keys), concurrency, func(i int) error {
		return client.IgnoreNotFound(testenv.MarkJob(ctx, c, keys[i], batchv1.JobComplete))
	})
}

// ForEach runs fn(0..n-1) on concurrency goroutines and returns the first error.
func ForEach(ctx context.Context, n, concurrency int, fn func(i int) error) error {
	if concurrency < 1 {
		concurrency = 1
	}
	idx := make(chan int)
	errs := make(chan error, concurrency)
	for range concurrency {
		go func() {
			var first error
			for i := range idx {
				if first != nil {
					continue
				}
				if err := fn(i); err != nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	var ctxErr error
loop:
	for i := range n {
		select {
		case idx <- i:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break loop
		}
	}
	close(idx)
	var first error
	for range concurrency {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		first = ctxErr
	}
	return first
}
