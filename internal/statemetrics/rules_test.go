//go:build integration

package statemetrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	jobtokenv1alpha1 "github.com/jobtoken/jobtoken/api/v1alpha1"
	"github.com/jobtoken/jobtoken/internal/devissuer"
	"github.com/jobtoken/jobtoken/internal/statemetrics"
	"github.com/jobtoken/jobtoken/internal/testenv"
	"github.com/jobtoken/jobtoken/internal/testenv/optest"
)

const (
	rulesFile     = "config/prometheus/rules.yaml"
	dashboardFile = "config/grafana/jobtoken-dashboard.json"
)

var (
	env     *testenv.Env
	shipped *testenv.Shipped
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.RunShippedTests(m, func(e *testenv.Env, s *testenv.Shipped) error {
		env, shipped = e, s
		return nil
	})
}

// report is what hack/promrules prints.
type report struct {
	Rules []struct {
		Alert       string                `json:"alert"`
		Expr        string                `json:"expr"`
		Annotations map[string]string     `json:"annotations"`
		Firing      [][]map[string]string `json:"firing"`
	} `json:"rules"`
	Dashboard []struct {
		Title  string `json:"title"`
		Expr   string `json:"expr"`
		Series []int  `json:"series"`
	} `json:"dashboard"`
	Metrics []string `json:"metrics"`
	Errors  []string `json:"errors"`
}

// promrules runs the rule checker (built by `make promrules`) with args.
func promrules(t *testing.T, args ...string) (*report, string) {
	t.Helper()
	bin := os.Getenv("PROMRULES_BIN")
	if bin == "" {
		t.Fatal("PROMRULES_BIN is not set: run the tests through `make test` (or `make promrules` and set it)")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	rep := &report{}
	if jerr := json.Unmarshal(out, rep); jerr != nil {
		t.Fatalf("promrules %s: %v (%v)\n%s%s", strings.Join(args, " "), jerr, err, out, stderr.String())
	}
	if err != nil && len(rep.Errors) == 0 {
		t.Fatalf("promrules failed without naming an error: %v\n%s", err, stderr.String())
	}
	return rep, string(out)
}

// TestRulesAndDashboardOnManagerMetrics feeds the manager's own /metrics, scraped at four
// moments of a real run, to the alert and dashboard expressions: everything must parse
// with Prometheus's parsers, select only metrics and labels the manager exports, and
// evaluate; each alert fires on the jobs and issuers that are in its state and on no
// other.
//
//  1. One job has just started: nothing fires.
//  2. That job was rotated and re-minted (its chain killed at the issuer); a second job
//     ended and was revoked; a third job's propagation budget (2m) exceeds the token
//     lifetime (1m); an issuer nobody answers for was added.
//  3. The issuer is down and the first job was asked to rotate: it fails. The third
//     job's Job completed.
//  4. The third job's revocation failed for the whole budget.
func TestRulesAndDashboardOnManagerMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	op := optest.Start(t, ctx, env, shipped, optest.Options{
		Setup: func(mgr ctrl.Manager) error { return statemetrics.Register(mgr, reg) },
	})
	scrape := metricsHandler(reg)
	dir := t.TempDir()
	if d := os.Getenv("RULES_DEBUG_DIR"); d != "" {
		dir = d
	}

	op.RunningJob(ctx, "healthy")
	moments := []string{snapshotWhen(t, scrape, filepath.Join(dir, "1.prom"), "healthy Running",
		`jobtoken_importjob_phase{name="healthy",namespace="`+op.Namespace+`",phase="Running"}`)}

	op.RotateNow(ctx, "healthy")
	testenv.Eventually(t, 30*time.Second, "healthy rotated", func() bool { return op.Job(ctx, "healthy").Status.Rotations >= 1 })
	op.KillChain(ctx, "healthy")
	op.RotateNow(ctx, "healthy")
	testenv.Eventually(t, 30*time.Second, "healthy re-minted", func() bool { return op.Job(ctx, "healthy").Status.Remints >= 1 })
	op.RunningJob(ctx, "done")
	op.CompleteJob(ctx, "done")
	tight := op.ImportJob("tight")
	tight.Spec.Rotation.PropagationBudget = &metav1.Duration{Duration: 2 * time.Minute}
	must(t, env.Client.Create(ctx, tight))
	testenv.Eventually(t, 30*time.Second, "tight Running", func() bool { return op.Job(ctx, "tight").Status.Phase == jobtokenv1alpha1.PhaseRunning })
	must(t, env.Client.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobtoken.dev/v1alpha1", "kind": "TokenIssuer",
		"metadata": map[string]any{"namespace": op.Namespace, "name": "broken"},
		"spec": map[string]any{"insecureAllowPlainHTTP": true, "oauth2": map[string]any{
			"issuerURL": "http://127.0.0.1:1", "clientID": "jobs", "clientSecretRef": map[string]any{"name": "client"},
		}},
	}}))
	moments = append(moments, snapshotWhen(t, scrape, filepath.Join(dir, "2.prom"), "the broken issuer not Ready, tight Running, done revoked, healthy re-minted",
		`jobtoken_issuer_ready{kind="TokenIssuer",name="broken"`, `jobtoken_importjob_phase{name="tight",namespace="`+op.Namespace+`",phase="Running"}`,
		`jobtoken_remints_total{`, `jobtoken_revocations_total{result="success"}`))

	op.Issuer.SetFaults(devissuer.Faults{Down: true})
	op.RotateNow(ctx, "healthy")
	op.CompleteJob(ctx, "tight")
	moments = append(moments, snapshotWhen(t, scrape, filepath.Join(dir, "3.prom"), "healthy's rotation failing",
		`jobtoken_importjob_condition{name="healthy",namespace="`+op.Namespace+`",reason="IssuerUnavailable",status="True",type="TokenRefreshFailed"}`))
	moments = append(moments, snapshotWhen(t, scrape, filepath.Join(dir, "4.prom"), "tight's revocation failed",
		`name="tight",namespace="`+op.Namespace+`",reason="RevocationBudgetSpent",status="True",type="RevocationFailed"}`))

	args := []string{"-rules", rulesFile, "-dashboard", dashboardFile}
	for _, m := range moments {
		args = append(args, "-metrics", m)
	}
	rep, raw := promrules(t, args...)
	for _, e := range rep.Errors {
		t.Errorf("promrules: %s", e)
	}
	if len(rep.Rules) < 8 || len(rep.Dashboard) < 10 {
		t.Fatalf("promrules read %d rules and %d dashboard queries:\n%s", len(rep.Rules), len(rep.Dashboard), raw)
	}

	fired := map[string][][]string{} // alert -> per moment, the objects it fires on
	for _, r := range rep.Rules {
		if len(r.Firing) != len(moments) {
			t.Fatalf("rule %s evaluated at %d moments, want %d", r.Alert, len(r.Firing), len(moments))
		}
		f := make([][]string, len(moments))
		for i, vec := range r.Firing {
			for _, m := range vec {
				f[i] = append(f[i], m["name"])
			}
		}
		fired[r.Alert] = f
	}
	// On a healthy operator nothing fires.
	for alert, f := range fired {
		if len(f[0]) > 0 {
			t.Errorf("%s fires at moment 1, when all is well, on %q", alert, f[0])
		}
	}
	want := []struct {
		alert  string
		moment int
		fires  []string
	}{
		{"JobtokenSlackBelowBudget", 1, []string{"tight"}},
		{"JobtokenIssuerNotReady", 1, []string{"broken"}},
		{"JobtokenRotationFailing", 1, nil},
		{"JobtokenRevocationFailed", 1, nil},
		{"JobtokenCredentialsLost", 1, nil},
		{"JobtokenStalled", 1, nil},
		{"JobtokenRotatedAfterExpiry", 1, nil},
		{"JobtokenStateUnreadable", 1, nil},
		{"JobtokenRotationFailing", 2, []string{"healthy"}},
		{"JobtokenRevocationFailed", 2, nil},
		{"JobtokenRotationFailing", 3, []string{"healthy"}},
		{"JobtokenRevocationFailed", 3, []string{"tight"}},
		{"JobtokenIssuerNotReady", 3, []string{"broken"}},
		{"JobtokenSlackBelowBudget", 3, nil},
		{"JobtokenCredentialsLost", 3, nil},
		{"JobtokenStalled", 3, nil},
		{"JobtokenRotatedAfterExpiry", 3, nil},
	}
	for _, w := range want {
		f, ok := fired[w.alert]
		if !ok {
			t.Errorf("no alert %s in %s", w.alert, rulesFile)
			continue
		}
		got := slices.Sorted(slices.Values(f[w.moment]))
		if !slices.Equal(got, w.fires) {
			t.Errorf("%s at moment %d fires on %q, want %q", w.alert, w.moment+1, got, w.fires)
		}
	}
	// The panels on what the run did show it at the last moment.
	for _, p := range rep.Dashboard {
		switch p.Title {
		case "Running ImportJobs by phase", "Time to expiry margin", "Issuer latency", "Rotations", "Re-mints",
			"Issuer request failures by class", "Rotation slack", "Revocations", "Issuers not Ready", "Jobs with abnormal conditions":
			if len(p.Series) != len(moments) || p.Series[len(moments)-1] == 0 {
				t.Errorf("dashboard panel %q shows nothing at the last moment (series %v): %s", p.Title, p.Series, p.Expr)
			}
		}
	}
}

// TestAlertsHaveRunbooks checks every alert names a summary and a runbook_url that is
// a heading of docs/operations.md.
func TestAlertsHaveRunbooks(t *testing.T) {
	rep, _ := promrules(t, "-rules", rulesFile, "-dashboard", dashboardFile)
	for _, e := range rep.Errors {
		t.Errorf("promrules: %s", e)
	}
	root, err := testenv.RepoRoot()
	must(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	must(t, err)
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(doc), -1) {
		anchors[strings.ToLower(strings.ReplaceAll(strings.TrimSpace(m[1]), " ", "-"))] = true
	}
	alerts := 0
	for _, r := range rep.Rules {
		if r.Alert == "" {
			continue
		}
		alerts++
		if r.Annotations["summary"] == "" {
			t.Errorf("%s has no summary", r.Alert)
		}
		url := r.Annotations["runbook_url"]
		page, anchor, _ := strings.Cut(url, "#")
		if !strings.HasSuffix(page, "/docs/operations.md") || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q is not a heading of docs/operations.md", r.Alert, url)
		}
	}
	if alerts == 0 {
		t.Fatalf("no alerts in %s", rulesFile)
	}
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{metrics.Registry, reg}, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}

// snapshotWhen scrapes the manager's metrics as /metrics serves them, up to 60 s until
// the text holds every one of want (the manager's cache, which the state metrics read,
// follows the API a moment later), writes them to file and returns FILE@UNIX_MILLIS.
func snapshotWhen(t *testing.T, h http.Handler, file, what string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", "text/plain")
		at := time.Now()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
		}
		text := rec.Body.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			must(t, os.WriteFile(file, rec.Body.Bytes(), 0o600))
			return fmt.Sprintf("%s@%d", file, at.UnixMilli())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics do not show %s after 60s: no %s in\n%s", what, missing, grep(text, "jobtoken_"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
