package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Found by review. What was wrong: the "Config reloads" annotation of examples/grafana-dashboard.json
// has textFormat "generation {{{{value}}}}". Grafana's Prometheus data
// source renders an annotation's titleFormat and textFormat with
// renderLegendFormat(format, labels): each {{NAME}} becomes the series'
// label NAME, or NAME itself when there is no such label (every version
// of it, the regexp \{\{\s*(.+?)\s*\}\} used below or the later
// \{\{([^\{\}]+?)\}\}, leaves "generation {{value}}"). Only labels are
// offered, never the sample value, and the series of
// changes(sluice_config_generation[1m]) > 0 carries only the target's
// labels (instance, job, and prometheus.yml's service). So
// every reload marker reads literally "generation {{value}}", and it
// could never show the generation anyway. README "Prometheus and Grafana":
// "Each configuration reload is marked as an annotation." Expected: every
// placeholder in titleFormat/textFormat names a label the series has, so
// the rendered text holds no braces (e.g. textFormat "{{instance}}").
func TestDashboardAnnotationTextRenders(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Annotations struct {
			List []struct {
				Name        string `json:"name"`
				Expr        string `json:"expr"`
				TitleFormat string `json:"titleFormat"`
				TextFormat  string `json:"textFormat"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	// The labels of an annotation series: sluice's gauges here have none of
	// their own, so only the target labels Prometheus adds.
	labels := map[string]string{"instance": "127.0.0.1:9901", "job": "sluice", "service": "sluice"}
	alias := regexp.MustCompile(`\{\{\s*(.+?)\s*\}\}`) // Grafana's renderLegendFormat
	render := func(format string) string {
		return alias.ReplaceAllStringFunc(format, func(m string) string {
			name := alias.FindStringSubmatch(m)[1]
			if v, ok := labels[name]; ok {
				return v
			}
			return name
		})
	}
	checked := 0
	for _, a := range d.Annotations.List {
		if a.Expr == "" {
			continue
		}
		checked++
		for field, format := range map[string]string{"titleFormat": a.TitleFormat, "textFormat": a.TextFormat} {
			for _, m := range alias.FindAllStringSubmatch(format, -1) {
				if _, ok := labels[m[1]]; !ok {
					t.Errorf("annotation %q %s %q: placeholder %q names no label of the series (Grafana offers labels only: %v)",
						a.Name, field, format, m[0], labels)
				}
			}
			if out := render(format); strings.Contains(out, "{{") || strings.Contains(out, "}}") {
				t.Errorf("annotation %q %s %q renders as %q in Grafana", a.Name, field, format, out)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Prometheus annotation in the dashboard")
	}
}
