package harness

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jobtoken/jobtoken/controllers"
	"github.com/jobtoken/jobtoken/internal/manager"
	"github.com/jobtoken/jobtoken/internal/operator"
	"github.com/jobtoken/jobtoken/internal/testenv"
)

// RunManagerRole is the benchmark's manager process (`bench manager ...`): exactly what
// cmd/manager runs (manager.New and operator.Setup with the production defaults,
// no client-side rate limit, leader election off), plus a stats endpoint on 127.0.0.1
// that reports the API requests it sent (by verb and resource), its heap, the
// controllers' metrics, and net/http/pprof.
func RunManagerRole(args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server")
	vaultNS := fs.String("vault-namespace", "", "vault namespace")
	concurrency := fs.Int("max-concurrent-reconciles", 0, "ImportJob workers (0: the controller's default)")
	statsFile := fs.String("stats-file", "", "file to write the stats endpoint's address to")
	watch := fs.String("watch-namespaces", "", "namespaces to serve besides the vault namespace (empty: every namespace)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	watched, err := manager.ParseWatchNamespaces(*watch)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(false)))
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS = -1 // as ctrl.GetConfig does: no client-side limit, rely on API priority and fairness
	counter := newRequestCounter(*vaultNS)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return counter.wrap(rt) })

	mgr, err := manager.New(cfg, manager.Options{
		VaultNamespace:         *vaultNS,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WatchNamespaces:        watched,
	})
	if err != nil {
		return err
	}
	if err := operator.Setup(mgr, controllers.Config{VaultNamespace: *vaultNS, MaxConcurrentReconciles: *concurrency}, metrics.Registry); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		st := collectStats(counter, r.URL.Query().Get("gc") == "1")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if *statsFile != "" {
		if err := os.WriteFile(*statsFile, []byte(ln.Addr().String()), 0o600); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return mgr.Start(ctx)
}

// requestCounter counts the API requests of the manager by "VERB resource" ("PUT
// secrets(vault)", "PATCH importjobs/status", "WATCH jobs", ...).
type requestCounter struct {
	vaultNS string
	mu      sync.Mutex
	counts  map[string]int64
}

func newRequestCounter(vaultNS string) *requestCounter {
	return &requestCounter{vaultNS: vaultNS, counts: map[string]int64{}}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		key := c.classify(r)
		c.mu.Lock()
		c.counts[key]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

// classify names a request by verb and resource from its path:
// /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]] or /apis/GROUP/VERSION/...
func (c *requestCounter) classify(r *http.Request) string {
	verb := r.Method
	if verb == http.MethodGet && r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) > 0 && parts[0] == "api":
		parts = parts[min(2, len(parts)):]
	case len(parts) > 0 && parts[0] == "apis":
		parts = parts[min(3, len(parts)):]
	default:
		return verb + " " + r.URL.Path
	}
	ns := ""
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		ns, parts = parts[1], parts[2:]
	}
	if len(parts) == 0 {
		return verb + " ?"
	}
	res := parts[0]
	if res == "secrets" && ns != "" {
		if ns == c.vaultNS {
			res = "secrets(vault)"
		} else {
			res = "secrets(job)"
		}
	}
	if len(parts) >= 3 {
		res += "/" + parts[2]
	}
	return verb + " " + res
}

func (c *requestCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// ManagerStats is what the manager role reports.
type ManagerStats struct {
	Time time.Time
	// Requests by "VERB resource".
	Requests map[string]int64
	// HeapAlloc and HeapInuse (after a forced GC when asked), and the process RSS.
	HeapAlloc, HeapInuse, Sys uint64
	RSS                       uint64
	Goroutines                int
	// Metrics are sums of the controllers' counters by name and labels of interest.
	Metrics map[string]float64
}

// Writes sums the mutating requests (POST, PUT, PATCH, DELETE).
func (s ManagerStats) Writes() int64 {
	var n int64
	for k, v := range s.Requests {
		if IsWrite(k) {
			n += v
		}
	}
	return n
}

// IsWrite tells whether a request key ("VERB resource") mutates.
func IsWrite(key string) bool {
	verb, _, _ := strings.Cut(key, " ")
	switch verb {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func collectStats(c *requestCounter, gc bool) ManagerStats {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := ManagerStats{
		Time: time.Now(), Requests: c.snapshot(),
		HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, Sys: ms.Sys,
		RSS: RSSBytes(os.Getpid()), Goroutines: runtime.NumGoroutine(),
		Metrics: map[string]float64{},
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		return st
	}
	for _, f := range families {
		name := f.GetName()
		switch name {
		case "jobtoken_rotations_total", "jobtoken_remints_total", "jobtoken_revocations_total":
			for _, m := range f.GetMetric() {
				st.Metrics[name] += m.GetCounter().GetValue()
			}
		case "jobtoken_token_requests_total":
			for _, m := range f.GetMetric() {
				st.Metrics[name+"{"+labelValue(m, "op")+","+labelValue(m, "result")+"}"] += m.GetCounter().GetValue()
			}
		case "controller_runtime_reconcile_total":
			for _, m := range f.GetMetric() {
				if labelValue(m, "controller") == "importjob" {
					st.Metrics[name+"{"+labelValue(m, "result")+"}"] += m.GetCounter().GetValue()
					st.Metrics[name] += m.GetCounter().GetValue()
				}
			}
		case "workqueue_depth":
			for _, m := range f.GetMetric() {
				if labelValue(m, "name") == "importjob" {
					st.Metrics[name] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return st
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ManagerClient reads a manager role's stats endpoint.
type ManagerClient struct {
	Addr string
	hc   *http.Client
}

// WaitManagerStats waits for the role to write its stats address into file.
func WaitManagerStats(ctx context.Context, file string, p *testenv.Proc, timeout time.Duration) (*ManagerClient, error) {
	var addr string
	err := testenv.Poll(ctx, timeout, 100*time.Millisecond, func() bool {
		if p.Exited() {
			return true
		}
		b, err := os.ReadFile(file)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != ""
	})
	if p.Exited() {
		return nil, errors.New("the manager process exited during start-up (see its log)")
	}
	if err != nil {
		return nil, fmt.Errorf("the manager's stats endpoint: %w", err)
	}
	return &ManagerClient{Addr: addr, hc: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// Stats fetches the manager's counters (after a forced GC when gc is set).
func (m *ManagerClient) Stats(gc bool) (ManagerStats, error) {
	u := "http://" + m.Addr + "/stats"
	if gc {
		u += "?gc=1"
	}
	var st ManagerStats
	resp, err := m.hc.Get(u)
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// CPUProfile writes a CPU profile of the manager over d to path.
func (m *ManagerClient) CPUProfile(d time.Duration, path string) error {
	return m.download(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), path)
}

// HeapProfile writes a heap profile (after GC) to path.
func (m *ManagerClient) HeapProfile(path string) error {
	return m.download("/debug/pprof/heap?gc=1", path)
}

func (m *ManagerClient) download(p, path string) error {
	resp, err := m.hc.Get("http://" + m.Addr + p)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = f.ReadFrom(resp.Body)
	return err
}

// Diff returns b−a for every request key.
func Diff(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// SumWrites sums the mutating requests of a diff.
func SumWrites(d map[string]int64) int64 {
	var n int64
	for k, v := range d {
		if IsWrite(k) {
			n += v
		}
	}
	return n
}
