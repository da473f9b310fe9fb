package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// TestMetricsExactCounts scrapes the registry after a known set of
// requests and checks every count per backend and status class.
func TestMetricsExactCounts(t *testing.T) {
	ok := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	m := metrics.New("test")
	yml := fmt.Sprintf(`routes:
  - { match: { path_prefix: /api/ }, pool: p }
  - { match: { host: only.example }, pool: dead }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
  dead: { algorithm: round_robin, backends: [{ address: %s }] }
retries: { attempts: 1 }
`, ok[0].addr(), ok[1].addr(), freeAddr(t))
	px := startProxyWith(t, yml, m)
	c := testClient(t)
	for range 20 {
		get(t, c, "http://"+px.addr+"/api/x", nil)
	}
	for range 3 {
		get(t, c, "http://"+px.addr+"/nothing", nil) // 404, no route
	}
	for range 2 {
		get(t, c, "http://"+px.addr+"/", map[string]string{"Host": "only.example"}) // 502, refused
	}

	got := gatherCounts(t, m, "sluice_requests_total")
	checks := map[string]float64{
		`route="",pool="",backend="",code="4xx"`:                           3,
		`route="/api/",pool="p",backend="` + ok[0].addr() + `",code="2xx"`: 10,
		`route="/api/",pool="p",backend="` + ok[1].addr() + `",code="2xx"`: 10,
	}
	for k, v := range checks {
		if got[k] != v {
			t.Errorf("sluice_requests_total{%s} = %v, want %v", k, got[k], v)
		}
	}
	dead := 0.0
	for k, v := range got {
		if strings.Contains(k, `pool="dead"`) && strings.HasSuffix(k, `code="5xx"`) {
			dead += v
		}
	}
	if dead != 2 {
		t.Errorf("5xx on the dead pool = %v, want 2", dead)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	connect := 0.0
	for k, v := range errs {
		if strings.Contains(k, `kind="connect"`) {
			connect += v
		}
	}
	if connect != 2 {
		t.Errorf("connect errors = %v, want 2", connect)
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// gatherCounts returns the values of one metric family keyed by
// `label="value",...` in route, pool, backend, code/kind/state order.
func gatherCounts(t *testing.T, m *metrics.Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	order := []string{"route", "pool", "backend", "code", "kind", "state"}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, metric := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var parts []string
			for _, k := range order {
				if v, ok := labels[k]; ok {
					parts = append(parts, fmt.Sprintf("%s=%q", k, v))
				}
			}
			v := metric.GetCounter().GetValue()
			if metric.GetGauge() != nil {
				v = metric.GetGauge().GetValue()
			}
			out[strings.Join(parts, ",")] = v
		}
	}
	return out
}

// TestMetricsForgetRemovedBackend: a backend removed by a reload leaves no
// series behind once it has drained.
func TestMetricsForgetRemovedBackend(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	m := metrics.New("test")
	px := startProxyWith(t, poolYAML("round_robin", []*testBackend{a, b}, nil), m)
	c := testClient(t)
	for range 4 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	cfg, err := config.Parse("test.yaml", []byte(poolYAML("round_robin", []*testBackend{a}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "series of the removed backend gone", 2*time.Second, func() bool {
		mfs, _ := m.Registry().Gather()
		for _, mf := range mfs {
			for _, metric := range mf.GetMetric() {
				for _, l := range metric.GetLabel() {
					if l.GetName() == "backend" && l.GetValue() == b.addr() {
						return false
					}
				}
			}
		}
		return true
	})
}

// TestAccessLogLines: one JSON line per request with the documented fields;
// the host logged is the client's even when the Host sent upstream is the
// backend's, with or without X-Forwarded-Host to find it in (a client's own
// X-Forwarded-Host, passed on when sluice does not set it, is not logged).
func TestAccessLogLines(t *testing.T) {
	for _, tt := range []struct{ name, extra string }{
		{"X-Forwarded-Host set", ""},
		{"X-Forwarded-Host passed", "forwarding: { x_forwarded_host: false }\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "b", nil)
			px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"preserve_host: false\n"+tt.extra)
			path := filepath.Join(t.TempDir(), "access.log")
			al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
			if err != nil {
				t.Fatal(err)
			}
			px.proxy.SetAccessLog(al)
			c := testClient(t)
			hdr := map[string]string{"X-Request-Id": "rid-1", "Host": "client.example", "X-Forwarded-Host": "forged.example"}
			for range 5 {
				get(t, c, "http://"+px.addr+"/hello?q=1", hdr)
			}
			px.proxy.SetAccessLog(nil)
			if err := al.Close(); err != nil {
				t.Fatal(err)
			}
			checkAccessLog(t, path, b.addr())
		})
	}
}

// TestAccessLogNoHost: an HTTP/1.0 request without Host goes upstream with
// the backend's address as Host; the access log's host stays empty (what
// the client sent), with or without X-Forwarded-Host, on a fresh scratch
// and on one a request with a Host used before.
func TestAccessLogNoHost(t *testing.T) {
	for _, extra := range []string{"", "forwarding: { x_forwarded_host: false }\n"} {
		t.Run("config "+strings.TrimSpace(extra), func(t *testing.T) {
			b := startBackend(t, "b", nil)
			px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+extra)
			path := filepath.Join(t.TempDir(), "access.log")
			al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
			if err != nil {
				t.Fatal(err)
			}
			px.proxy.SetAccessLog(al)
			for _, raw := range []string{
				"GET /a HTTP/1.0\r\n\r\n",
				"GET /b HTTP/1.1\r\nHost: client.example\r\nConnection: close\r\n\r\n",
				"GET /c HTTP/1.0\r\n\r\n",
			} {
				if code := rawStatus(t, px.addr, raw); code != 200 {
					t.Fatalf("%q: status %d, want 200", raw, code)
				}
			}
			px.proxy.SetAccessLog(nil)
			if err := al.Close(); err != nil {
				t.Fatal(err)
			}
			var hosts []string
			for _, line := range accessLogLines(t, path) {
				host, _ := line["host"].(string)
				hosts = append(hosts, host)
			}
			if want := []string{"", "client.example", ""}; strings.Join(hosts, ",") != strings.Join(want, ",") {
				t.Errorf("logged hosts %q, want %q", hosts, want)
			}
		})
	}
}

// checkAccessLog checks TestAccessLogLines's five lines in the file at path.
func checkAccessLog(t *testing.T, path, backend string) {
	t.Helper()
	lines := accessLogLines(t, path)
	for i, line := range lines {
		n := i + 1
		for _, k := range []string{"time", "remote_addr", "method", "host", "path", "status", "bytes_in", "bytes_out", "duration", "upstream_addr", "upstream_duration", "route", "pool", "request_id"} {
			if _, ok := line[k]; !ok {
				t.Errorf("line %d lacks %q: %v", n, k, line)
			}
		}
		if line["host"] != "client.example" {
			t.Errorf("line %d host = %v, want the client's Host even with preserve_host: false", n, line["host"])
		}
		if line["path"] != "/hello" || line["status"] != float64(200) || line["request_id"] != "rid-1" || line["upstream_addr"] != backend || line["pool"] != "p" {
			t.Errorf("line %d = %v, want path /hello, status 200, request_id rid-1, upstream %s, pool p", n, line, backend)
		}
	}
	if len(lines) != 5 {
		t.Errorf("access log lines = %d, want 5", len(lines))
	}
}

// accessLogLines reads the access log at path, one JSON object per line.
func accessLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", len(lines)+1, err, sc.Text())
		}
		lines = append(lines, line)
	}
	return lines
}

// backendGauge returns the value of gauge name for backend addr, with
// label state=state when state is not "".
func backendGauge(t *testing.T, m *metrics.Metrics, name, addr, state string) float64 {
	t.Helper()
	for k, v := range gatherCounts(t, m, name) {
		if strings.Contains(k, fmt.Sprintf("backend=%q", addr)) && (state == "" || strings.Contains(k, fmt.Sprintf("state=%q", state))) {
			return v
		}
	}
	t.Fatalf("no %s for %s (state %q)", name, addr, state)
	return 0
}

// TestBackendMetricsFollowRotation: sluice_backend_up says whether a
// backend takes new requests, and a backend removed by a reload while a
// request is still running on it shows as draining and down until it is
// forgotten, as /admin/pools shows it (found by a live probe: it stayed
// "healthy", up 1).
func TestBackendMetricsFollowRotation(t *testing.T) {
	release := make(chan struct{})
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { <-release })
	other := startBackend(t, "other", nil)
	m := metrics.New("test")
	yml := func(bs ...*testBackend) string { return poolYAML("round_robin", bs, nil) + "drain_timeout: 30s\n" }
	px := startProxyWith(t, yml(slow, other), m)
	ctx := context.Background()

	if err := px.ctrl.SetDrain(ctx, "p", other.addr(), true); err != nil {
		t.Fatal(err)
	}
	if up := backendGauge(t, m, "sluice_backend_up", other.addr(), ""); up != 0 {
		t.Errorf("admin-drained backend: up = %v, want 0", up)
	}
	if err := px.ctrl.SetDrain(ctx, "p", other.addr(), false); err != nil {
		t.Fatal(err)
	}
	if up := backendGauge(t, m, "sluice_backend_up", other.addr(), ""); up != 1 {
		t.Errorf("undrained backend: up = %v, want 1", up)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 10 * time.Second}
		for range 2 { // round robin: one of two reaches slow
			resp, err := c.Get("http://" + px.addr + "/")
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	waitFor(t, "a request running on slow", 5*time.Second, func() bool { return slow.hits.Load() > 0 })
	cfg, err := config.Parse("test.yaml", []byte(yml(other)))
	if err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if v := backendGauge(t, m, "sluice_backend_state", slow.addr(), "draining"); v != 1 {
		t.Errorf("removed backend with a request in flight: state draining = %v, want 1", v)
	}
	if up := backendGauge(t, m, "sluice_backend_up", slow.addr(), ""); up != 0 {
		t.Errorf("removed backend with a request in flight: up = %v, want 0", up)
	}
	close(release)
	<-done
}
