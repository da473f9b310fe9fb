package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// The dashboard and the metrics must not drift apart: every metric a panel
// queries has to be one that sluice exports.

const dashboardFile = "../examples/grafana-dashboard.json"

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reMatchers = regexp.MustCompile(`\{[^}]*\}`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reVariable = regexp.MustCompile(`\$\{?\w+\}?`)
	reIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	reLabelVal = regexp.MustCompile(`^\s*label_values\((.*),\s*\w+\s*\)\s*$`)
	reLabelsOf = regexp.MustCompile(`^\s*label_values\(\s*\w+\s*\)\s*$`) // of every series
)

var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true,
	"atan2": true, "start": true, "end": true,
}

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges, grouping clauses
// and variables are gone, less functions (followed by a parenthesis) and
// keywords.
func metricNames(expr string) []string {
	if reLabelsOf.MatchString(expr) {
		return nil
	}
	if m := reLabelVal.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	for _, re := range []*regexp.Regexp{reString, reMatchers, reRange, reGrouping, reVariable} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, loc := range reIdent.FindAllStringIndex(expr, -1) {
		id := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (expr[loc[0]-1] == '.' || expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9') {
			continue // the exponent of a number such as 1e3
		}
		if promqlKeywords[strings.ToLower(id)] {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		if !slices.Contains(names, id) {
			names = append(names, id)
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{`sum by (route) (rate(a_total{route=~"$route",x="y{z}"}[$__rate_interval]))`, []string{"a_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket[5m])))`, []string{"h_seconds_bucket"}},
		{`a / on (instance, job) group_left() b * 1e3`, []string{"a", "b"}},
		{`x and on (instance, job) y`, []string{"x", "y"}},
		{`time() - max(ts_seconds offset 5m)`, []string{"ts_seconds"}},
		{`label_values(m_info{instance=~"$instance"}, route)`, []string{"m_info"}},
		{`label_values(route)`, nil},
	}
	for _, tt := range tests {
		if got := metricNames(tt.give); !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// exprs lists every query in the dashboard with where it is.
func (d dashboard) exprs() map[string]string {
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				out[p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			_ = json.Unmarshal(v.Query, &s)
			q.Query = s
		}
		out["variable "+v.Name] = q.Query
	}
	for i, a := range d.Annotations.List {
		if a.Expr != "" {
			out["annotation "+string(rune('0'+i))] = a.Expr
		}
	}
	return out
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	d := readDashboard(t)
	m := New("test")
	touchAll(m)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
	}
	exported := func(name string) bool {
		if _, ok := types[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if !ok {
				continue
			}
			switch types[base] {
			case dto.MetricType_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suffix != "_bucket"
			}
		}
		return false
	}

	used := map[string]bool{}
	for where, expr := range d.exprs() {
		names := metricNames(expr)
		if len(names) == 0 && !strings.HasPrefix(where, "variable") {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, name := range names {
			used[strings.TrimSuffix(name, "_bucket")] = true
			if !exported(name) {
				t.Errorf("%s: %q queries %s, which sluice does not export", where, expr, name)
			}
		}
	}
	// The panels the dashboard promises.
	for _, name := range []string{
		"sluice_requests_total", "sluice_request_duration_seconds", "sluice_upstream_duration_seconds",
		"sluice_backend_up", "sluice_backend_state", "sluice_backend_weight", "sluice_requests_in_flight",
		"sluice_config_reloads_total", "sluice_config_generation",
	} {
		if !used[name] {
			t.Errorf("dashboard does not use %s", name)
		}
	}
}

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d, want 36 or later", d.SchemaVersion)
	}
	var hasDS bool
	for _, v := range d.Templating.List {
		hasDS = hasDS || v.Type == "datasource" && v.Name == "DS_PROMETHEUS"
	}
	if !hasDS {
		t.Error("no datasource variable DS_PROMETHEUS")
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}") {
				t.Errorf("panel %q does not use ${DS_PROMETHEUS}", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("panel %q has a target on datasource %q", p.Title, tg.Datasource.UID)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

func TestPrometheusExample(t *testing.T) {
	raw, err := os.ReadFile("../examples/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("prometheus.yml has %d scrape configs, want 1", len(cfg.ScrapeConfigs))
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.MetricsPath != "/metrics" || len(sc.StaticConfigs) != 1 ||
		!slices.Equal(sc.StaticConfigs[0].Targets, []string{"127.0.0.1:9901"}) {
		t.Errorf("scrape config = %+v, want 127.0.0.1:9901/metrics", sc)
	}
}
