package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sluice/metrics"
)

// TestMetricsReloadKeepsSeries: reloads that keep a backend (new
// timeouts, so a new client; a new weight; another route beside) leave
// its counters where they were; one that removes it removes them.
func TestMetricsReloadKeepsSeries(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	m := metrics.New("test")
	cfg := func(extra string, bs ...*testBackend) string {
		y := "routes:\n  - { match: { path_prefix: / }, pool: p }\n" + extra + "pools:\n  p:\n    algorithm: round_robin\n    backends:\n"
		for _, x := range bs {
			y += fmt.Sprintf("      - { address: %s }\n", x.addr())
		}
		return y
	}
	px := startProxyWith(t, cfg("", a, b), m)
	c := testClient(t)
	for range 10 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	snap := func() map[string]float64 {
		out := map[string]float64{}
		for k, v := range gatherCounts(t, m, "sluice_requests_total") {
			out["req "+k] = v
		}
		out["up a"] = float64(reviewUpstreamCount(t, m, a.addr()))
		out["up b"] = float64(reviewUpstreamCount(t, m, b.addr()))
		return out
	}
	before := snap()
	apply(t, px, cfg("timeouts: { response: 7s }\n", a, b))
	time.Sleep(400 * time.Millisecond)
	after := snap()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s = %v after a settings reload, was %v", k, after[k], v)
		}
	}
	apply(t, px, cfg("timeouts: { response: 7s }\n", a))
	waitFor(t, "b forgotten", 3*time.Second, func() bool { return !exported(t, m, "backend", b.addr()) })
	after = snap()
	for k, v := range before {
		if strings.Contains(k, b.addr()) || k == "up b" {
			continue
		}
		if after[k] != v {
			t.Errorf("%s = %v after b left, was %v", k, after[k], v)
		}
	}
}
