package proxy

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/metrics"
)

// TestReadmeConnLimitFailureLogged pins what README
// (Observability, "Upstream failures in the process log"; Metrics,
// sluice_upstream_errors_total; Access log, upstream_error) says of a
// request that finds max_conns_per_backend reached and has no other
// backend: the client gets 503, the process log has one "upstream
// attempt failed" line with kind conn_limit and retried false, and the
// metric counts it as kind="other". (README's process-log paragraph says
// retried false means "the client got this failure's 502/504": for
// conn_limit it is 503. Passes; a wording point only.)
func TestReadmeConnLimitFailureLogged(t *testing.T) {
	addr, free, open, _ := gatedBackend(t, func(path string) bool { return path == "/slow" })
	var out logLines
	m := metrics.New("test")
	y := fmt.Sprintf(`retries: { attempts: 1 }
routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
limits: { max_conns_per_backend: 1 }
timeouts: { response: 8s, upstream_idle: 30s }
`, addr)
	px := startProxyLogged(t, y, m, nil, zerolog.New(&out))

	slow := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 9 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + px.addr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	waitFor(t, "the slow request's connection at the backend", 5*time.Second, func() bool { return open.Load() == 1 })

	code, body := rawDo(t, px.addr, "GET", "/fast", "")
	free()
	if got := <-slow; got != 200 {
		t.Errorf("GET /slow = %d, want 200", got)
	}
	if code != 503 {
		t.Fatalf("GET /fast with the only connection busy = %d %q, want 503 (conn_limit)", code, body)
	}
	lines := out.with(t, "upstream attempt failed")
	if len(lines) != 1 {
		t.Fatalf("%d upstream failure lines, want 1: %v", len(lines), lines)
	}
	if l := lines[0]; l["kind"] != "conn_limit" || l["retried"] != false || l["pool"] != "p" || l["backend"] != addr {
		t.Errorf("failure line = %v; want kind conn_limit, retried false, pool p, backend %s", l, addr)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	key := fmt.Sprintf("pool=%q,backend=%q,kind=%q", "p", addr, "other")
	if errs[key] != 1 {
		t.Errorf("sluice_upstream_errors_total{%s} = %v, want 1 (conn_limit counts as other); all: %v", key, errs[key], errs)
	}
}
