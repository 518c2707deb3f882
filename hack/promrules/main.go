// Command promrules checks the operator's Prometheus rules and Grafana dashboard: the
// rules are parsed with Prometheus's own rule-file parser (model/rulefmt), every
// expression of the rules and of the dashboard's panels with its PromQL parser, and,
// given snapshots of the manager's /metrics, every expression is evaluated by the PromQL
// engine on them: each metric and label it selects on must exist there, and the report
// lists what each alert would fire on. It prints the report as JSON; the exit status is
// 1 when something does not parse, selects a metric or label the manager does not
// export, or fails to evaluate.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
	"sigs.k8s.io/yaml"
)

// Report is what promrules prints.
type Report struct {
	Rules     []Rule   `json:"rules"`
	Dashboard []Panel  `json:"dashboard"`
	Metrics   []string `json:"metrics,omitempty"`
	Errors    []string `json:"errors"`
}

// Rule is one rule of the rules file.
type Rule struct {
	Group       string            `json:"group"`
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	Selects     []string          `json:"selects"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Firing holds, for each snapshot, the label sets the expression returns at its time
	// (what the alert would fire on once its `for` has passed).
	Firing [][]map[string]string `json:"firing"`
}

// Panel is one query of the dashboard.
type Panel struct {
	Title   string   `json:"title"`
	Expr    string   `json:"expr"`
	Selects []string `json:"selects"`
	// Series counts, for each snapshot, the non-NaN series the query returns at its time.
	Series []int `json:"series"`
}

type snapshot struct {
	file string
	at   time.Time
}

type snapshots []snapshot

func (s *snapshots) String() string { return fmt.Sprint(*s) }

// Set takes FILE@UNIXMILLIS.
func (s *snapshots) Set(v string) error {
	file, at, ok := strings.Cut(v, "@")
	if !ok {
		return fmt.Errorf("-metrics wants FILE@UNIX_MILLIS, not %q", v)
	}
	ms, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return fmt.Errorf("-metrics %q: the time after @ must be Unix milliseconds: %w", v, err)
	}
	*s = append(*s, snapshot{file: file, at: time.UnixMilli(ms)})
	return nil
}

func main() {
	var (
		rulesFile string
		dashboard string
		metrics   snapshots
	)
	flag.StringVar(&rulesFile, "rules", "", "A Prometheus rule file, or a PrometheusRule object (its spec is the rule file).")
	flag.StringVar(&dashboard, "dashboard", "", "A Grafana dashboard JSON file.")
	flag.Var(&metrics, "metrics", "A snapshot of /metrics in the text format, FILE@UNIX_MILLIS (the time it was taken); repeatable.")
	flag.Parse()
	if rulesFile == "" {
		fmt.Fprintln(os.Stderr, "promrules: -rules is required")
		os.Exit(2)
	}
	rep := run(rulesFile, dashboard, metrics)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
	if len(rep.Errors) > 0 {
		os.Exit(1)
	}
}

var promParser = parser.NewParser(parser.Options{})

func run(rulesFile, dashboard string, metrics snapshots) *Report {
	rep := &Report{Rules: []Rule{}, Dashboard: []Panel{}, Errors: []string{}}
	fail := func(format string, args ...any) { rep.Errors = append(rep.Errors, fmt.Sprintf(format, args...)) }

	groups, err := readRules(rulesFile)
	if err != nil {
		fail("%s: %v", rulesFile, err)
	}
	if groups != nil {
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				rep.Rules = append(rep.Rules, Rule{Group: g.Name, Alert: r.Alert, Record: r.Record, Expr: r.Expr, Annotations: r.Annotations, Firing: [][]map[string]string{}})
			}
		}
	}
	if dashboard != "" {
		panels, err := readDashboard(dashboard)
		if err != nil {
			fail("%s: %v", dashboard, err)
		}
		rep.Dashboard = panels
	}

	// Every expression parses; collect what it selects.
	exprs := map[string]parser.Expr{}
	parse := func(where, expr string) []string {
		e, err := promParser.ParseExpr(expr)
		if err != nil {
			fail("%s: %v", where, err)
			return nil
		}
		exprs[expr] = e
		return selects(e)
	}
	for i := range rep.Rules {
		rep.Rules[i].Selects = parse("rule "+rep.Rules[i].Alert+rep.Rules[i].Record, rep.Rules[i].Expr)
	}
	for i := range rep.Dashboard {
		rep.Dashboard[i].Selects = parse("panel "+strconv.Quote(rep.Dashboard[i].Title), rep.Dashboard[i].Expr)
	}
	if len(metrics) == 0 {
		return rep
	}

	db, dir, names, err := load(metrics)
	if err != nil {
		fail("load metrics: %v", err)
		return rep
	}
	defer os.RemoveAll(dir)
	defer db.Close()
	rep.Metrics = slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	// Each selector and grouping names a metric the manager exports, with its labels.
	checkNames := func(where string, e parser.Expr) {
		for _, err := range checkSelectors(e, names) {
			fail("%s: %v", where, err)
		}
	}
	engine := promql.NewEngine(promql.EngineOpts{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxSamples: 1_000_000, Timeout: time.Minute,
		LookbackDelta: 5 * time.Minute, Parser: promParser,
	})
	eval := func(where, expr string, at time.Time) (promql.Vector, bool) {
		q, err := engine.NewInstantQuery(context.Background(), db, nil, expr, at)
		if err != nil {
			fail("%s: %v", where, err)
			return nil, false
		}
		defer q.Close()
		res := q.Exec(context.Background())
		if res.Err != nil {
			fail("%s: %v", where, res.Err)
			return nil, false
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			return v, true
		case promql.Scalar:
			return promql.Vector{{F: v.V}}, true
		default:
			fail("%s: evaluates to %s, want a vector", where, res.Value.Type())
			return nil, false
		}
	}
	for i := range rep.Rules {
		r := &rep.Rules[i]
		where := "rule " + r.Alert + r.Record
		if e, ok := exprs[r.Expr]; ok {
			checkNames(where, e)
			for _, snap := range metrics {
				vec, ok := eval(where, r.Expr, snap.at)
				if !ok {
					break
				}
				firing := []map[string]string{}
				for _, s := range vec {
					m := s.Metric.Map()
					m["__value__"] = strconv.FormatFloat(s.F, 'g', -1, 64)
					firing = append(firing, m)
				}
				r.Firing = append(r.Firing, firing)
			}
		}
	}
	for i := range rep.Dashboard {
		p := &rep.Dashboard[i]
		where := "panel " + strconv.Quote(p.Title)
		if e, ok := exprs[p.Expr]; ok {
			checkNames(where, e)
			for _, snap := range metrics {
				vec, ok := eval(where, p.Expr, snap.at)
				if !ok {
					break
				}
				n := 0
				for _, s := range vec {
					if !math.IsNaN(s.F) {
						n++
					}
				}
				p.Series = append(p.Series, n)
			}
		}
	}
	return rep
}

// readRules parses a rule file, or the spec of a PrometheusRule object, with
// Prometheus's parser (unknown fields are errors).
func readRules(file string) (*rulefmt.RuleGroups, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var obj struct {
		Kind string          `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	if obj.Kind == "PrometheusRule" {
		if data, err = yaml.JSONToYAML(obj.Spec); err != nil {
			return nil, err
		}
	}
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, promParser, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(groups.Groups) == 0 {
		return nil, errors.New("no rule groups")
	}
	return groups, nil
}

// grafanaVars are the values the dashboard's variables take for the check.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h",
	"${namespace}", ".*", "$namespace", ".*",
)

var unknownVar = regexp.MustCompile(`\$\{?[A-Za-z_]+`)

// readDashboard returns the PromQL queries of every panel (rows' panels included).
func readDashboard(file string) ([]Panel, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var dash struct {
		Title  string            `json:"title"`
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		return nil, err
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		return nil, errors.New("a dashboard needs a title, a uid and panels")
	}
	var out []Panel
	var walk func([]json.RawMessage) error
	walk = func(panels []json.RawMessage) error {
		for _, raw := range panels {
			var p struct {
				Title   string            `json:"title"`
				Type    string            `json:"type"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				expr := grafanaVars.Replace(t.Expr)
				if v := unknownVar.FindString(expr); v != "" {
					return fmt.Errorf("panel %q uses %s, which the check does not know", p.Title, v)
				}
				out = append(out, Panel{Title: p.Title, Expr: expr})
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(dash.Panels)
}

// selects returns the metric names an expression selects.
func selects(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && !slices.Contains(out, vs.Name) {
			out = append(out, vs.Name)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// checkSelectors reports selectors of metrics not in names (metric -> its label names),
// matchers and groupings on labels the metric does not have.
func checkSelectors(e parser.Expr, names map[string]map[string]bool) []error {
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			lbls, ok := names[n.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("selects %s, which the manager does not export", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !lbls[m.Name] {
					errs = append(errs, fmt.Errorf("%s has no label %q", n.Name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			vs := innerSelector(n.Expr)
			if vs == nil || n.Without {
				return nil
			}
			lbls := names[vs.Name]
			for _, g := range n.Grouping {
				if lbls != nil && !lbls[g] {
					errs = append(errs, fmt.Errorf("groups %s by %q, which it does not have", vs.Name, g))
				}
			}
		}
		return nil
	})
	return errs
}

// innerSelector is the one selector an aggregation's argument reads, through function
// calls and parentheses (rate(x[5m]) reads x); nil when it reads several or none.
func innerSelector(e parser.Expr) *parser.VectorSelector {
	switch e := e.(type) {
	case *parser.VectorSelector:
		return e
	case *parser.MatrixSelector:
		return innerSelector(e.VectorSelector)
	case *parser.ParenExpr:
		return innerSelector(e.Expr)
	case *parser.Call:
		var found *parser.VectorSelector
		for _, a := range e.Args {
			if vs := innerSelector(a); vs != nil {
				if found != nil {
					return nil
				}
				found = vs
			}
		}
		return found
	}
	return nil
}

// load writes the snapshots into a TSDB at their times, and returns the metric names
// seen with their label names (histograms as _bucket, _sum and _count).
func load(snaps snapshots) (*tsdb.DB, string, map[string]map[string]bool, error) {
	dir, err := os.MkdirTemp("", "promrules-")
	if err != nil {
		return nil, "", nil, err
	}
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = int64(24 * time.Hour / time.Millisecond)
	db, err := tsdb.Open(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, opts, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	names := map[string]map[string]bool{}
	// A series missing from a later snapshot gets a staleness marker at its time, as a
	// scrape would write: it ends there instead of lingering for the lookback window.
	var previous map[string]labels.Labels
	for _, s := range snaps {
		current := map[string]labels.Labels{}
		f, err := os.Open(s.file)
		if err != nil {
			return nil, dir, nil, err
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		families, err := p.TextToMetricFamilies(f)
		f.Close()
		if err != nil {
			return nil, dir, nil, fmt.Errorf("%s: %w", s.file, err)
		}
		app := db.Appender(context.Background())
		ts := s.at.UnixMilli()
		add := func(name string, lp []*dto.LabelPair, extra map[string]string, v float64) error {
			b := labels.NewBuilder(labels.EmptyLabels())
			b.Set(labels.MetricName, name)
			if names[name] == nil {
				names[name] = map[string]bool{}
			}
			for _, l := range lp {
				b.Set(l.GetName(), l.GetValue())
				names[name][l.GetName()] = true
			}
			for k, val := range extra {
				b.Set(k, val)
				names[name][k] = true
			}
			lbls := b.Labels()
			current[lbls.String()] = lbls
			_, err := app.Append(0, lbls, ts, v)
			return err
		}
		for name, fam := range families {
			for _, m := range fam.GetMetric() {
				var err error
				switch fam.GetType() {
				case dto.MetricType_COUNTER:
					err = add(name, m.GetLabel(), nil, m.GetCounter().GetValue())
				case dto.MetricType_GAUGE:
					err = add(name, m.GetLabel(), nil, m.GetGauge().GetValue())
				case dto.MetricType_UNTYPED:
					err = add(name, m.GetLabel(), nil, m.GetUntyped().GetValue())
				case dto.MetricType_HISTOGRAM:
					h := m.GetHistogram()
					for _, b := range h.GetBucket() {
						if err = add(name+"_bucket", m.GetLabel(), map[string]string{"le": strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)}, float64(b.GetCumulativeCount())); err != nil {
							break
						}
					}
					if err == nil {
						err = add(name+"_bucket", m.GetLabel(), map[string]string{"le": "+Inf"}, float64(h.GetSampleCount()))
					}
					if err == nil {
						err = add(name+"_sum", m.GetLabel(), nil, h.GetSampleSum())
					}
					if err == nil {
						err = add(name+"_count", m.GetLabel(), nil, float64(h.GetSampleCount()))
					}
				case dto.MetricType_SUMMARY:
					err = add(name+"_count", m.GetLabel(), nil, float64(m.GetSummary().GetSampleCount()))
					if err == nil {
						err = add(name+"_sum", m.GetLabel(), nil, m.GetSummary().GetSampleSum())
					}
				}
				if err != nil {
					return nil, dir, nil, fmt.Errorf("%s: %s: %w", s.file, name, err)
				}
			}
		}
		for key, lbls := range previous {
			if _, ok := current[key]; !ok {
				if _, err := app.Append(0, lbls, ts, math.Float64frombits(value.StaleNaN)); err != nil {
					return nil, dir, nil, err
				}
			}
		}
		if err := app.Commit(); err != nil {
			return nil, dir, nil, err
		}
		previous = current
	}
	return db, dir, names, nil
}
