package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestReadmeTable: every row of the README's metrics table is a
// family sluice exports, with the documented type and exactly the
// documented labels, and nothing sluice exports is missing from the table.
// The /metrics body parses with the Prometheus text parser.
func TestReadmeTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skip("README not found:", err)
	}
	m := New("test")
	touchAll(m)
	m.Pool("web").SetPanic(true)
	m.DiscoveryError("web")
	m.CountRefusedConns(func() uint64 { return 2 })

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}

	row := regexp.MustCompile("(?m)^\\| `(sluice_[a-z_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")
	documented := map[string]bool{}
	for _, r := range row.FindAllStringSubmatch(string(readme), -1) {
		name, typ := r[1], r[2]
		var labels []string
		for _, l := range strings.Split(r[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		documented[name] = true
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s: in the README, not exported", name)
			continue
		}
		if got := strings.ToLower(mf.GetType().String()); got != typ {
			t.Errorf("%s: type %s, README says %s", name, got, typ)
		}
		for _, mt := range mf.GetMetric() {
			var got []string
			for _, lp := range mt.GetLabel() {
				got = append(got, lp.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, labels) {
				t.Errorf("%s: labels %v, README says %v", name, got, labels)
				break
			}
		}
	}
	if len(documented) < 20 {
		t.Fatalf("found only %d rows in the README table", len(documented))
	}
	for name := range mfs {
		if strings.HasPrefix(name, "sluice_") && !documented[name] {
			t.Errorf("%s: exported, not in the README table", name)
		}
	}
}

// TestForgetLeavesOthers: forgetting one backend, route or pool
// deletes exactly its series, never those of a backend of the same
// address in another pool or of a route whose name has the other as a
// prefix.
func TestForgetLeavesOthers(t *testing.T) {
	m := New("test")
	for _, pool := range []string{"a", "b"} {
		b := m.Backend(pool, "10.0.0.1:80")
		b.SetUp(true)
		b.SetConnsFunc(func() int { return 1 })
		m.Requests("/", pool, "10.0.0.1:80").Inc(200)
		m.Requests("/x", pool, "10.0.0.1:80").Inc(200)
		m.Requests("/", pool, "").Inc(503)
		m.Pool(pool).Retry()
	}
	m.Route("/").ObserveDuration(time.Millisecond)
	m.Route("/x").ObserveDuration(time.Millisecond)
	m.ForgetBackend("a", "10.0.0.1:80")
	m.ForgetRoute("/")
	for _, name := range []string{"sluice_backend_up", "sluice_upstream_connections"} {
		if got := series(t, m, name); len(got) != 1 || got["backend=10.0.0.1:80,pool=b"] != 1 {
			t.Errorf("%s after forgetting a's backend: %v, want b's only", name, got)
		}
	}
	got := series(t, m, "sluice_requests_total")
	for k, v := range got {
		if v != 0 && (!strings.Contains(k, "route=/x") || strings.Contains(k, "pool=a,")) {
			t.Errorf("sluice_requests_total{%s} = %v left", k, v)
		}
	}
	if n := reviewCount(got, "route=/x", "pool=b,"); n != 5 {
		t.Errorf("route /x through b: %d series, want 5 (%v)", n, got)
	}
	if h := series(t, m, "sluice_request_duration_seconds"); len(h) != 1 || h["route=/x"] != 1 {
		t.Errorf("sluice_request_duration_seconds after forgetting /: %v", h)
	}
	m.ForgetPool("b")
	for _, name := range []string{"sluice_backend_up", "sluice_upstream_connections", "sluice_retries_total"} {
		got := series(t, m, name)
		for k := range got {
			if strings.Contains(k, "pool=b") {
				t.Errorf("%s{%s} left after ForgetPool(b)", name, k)
			}
		}
	}
}

func reviewCount(got map[string]float64, parts ...string) int {
	n := 0
outer:
	for k := range got {
		for _, p := range parts {
			if !strings.Contains(k, p) {
				continue outer
			}
		}
		n++
	}
	return n
}
