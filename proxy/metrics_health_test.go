package proxy

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// TestMetricsHealthAndEjection: probes counted as the backend saw
// them; an ejection counted once, the state gauges following it.
func TestMetricsHealthAndEjection(t *testing.T) {
	var probesA, probesBad atomic.Int64
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probesA.Add(1)
		}
	})
	bad := startBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probesBad.Add(1)
			return
		}
		w.WriteHeader(500)
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 1s }
    outlier_detection: { consecutive_failures: 3, base_ejection_time: 400ms, max_ejection_percent: 50 }
retries: { attempts: 1 }
`, a.addr(), bad.addr()), m)
	c := testClient(t)
	var fails int
	for range 6 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code == 500 {
			fails++
		}
	}
	t.Logf("fails %d", fails)
	waitFor(t, "bad ejected", 2*time.Second, func() bool {
		v, _ := gaugeState(t, m, bad.addr(), "ejected")
		return v == 1
	})
	if v := reviewSum(gatherCounts(t, m, "sluice_outlier_ejections_total"), bad.addr()); v != 1 {
		t.Errorf("ejections = %v, want 1", v)
	}
	if v, _ := reviewGauge(t, m, "sluice_backend_up", bad.addr()); v != 0 {
		t.Errorf("ejected backend up = %v", v)
	}
	waitFor(t, "bad back", 3*time.Second, func() bool {
		v, _ := gaugeState(t, m, bad.addr(), "healthy")
		return v == 1
	})
	if v, _ := reviewGauge(t, m, "sluice_backend_up", bad.addr()); v != 1 {
		t.Errorf("backend back up = %v", v)
	}
	// Stop the probes, then compare.
	apply(t, px, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
`, a.addr(), bad.addr()))
	// Update waited for the stopped probes: every probe the backends saw
	// is counted, as a success (both answer 200 on /healthz), but the one
	// the stop may have cut short after the backend answered it.
	for _, bk := range []struct {
		addr string
		saw  int64
	}{{a.addr(), probesA.Load()}, {bad.addr(), probesBad.Load()}} {
		var ok, failed float64
		for _, mt := range reviewFamily(t, m, "sluice_health_checks_total") {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["backend"] != bk.addr {
				continue
			}
			if labels["result"] == "success" {
				ok += mt.GetCounter().GetValue()
			} else {
				failed += mt.GetCounter().GetValue()
			}
		}
		if ok < float64(bk.saw-1) || ok > float64(bk.saw) || failed != 0 {
			t.Errorf("%s: health_checks_total success %v, failure %v; the backend answered %d probes with 200", bk.addr, ok, failed, bk.saw)
		}
	}
}

// gaugeState is sluice_backend_state{state} for backend.
func gaugeState(t *testing.T, m *metrics.Metrics, backend, state string) (float64, bool) {
	t.Helper()
	for _, mt := range reviewFamily(t, m, "sluice_backend_state") {
		var b, s string
		for _, l := range mt.GetLabel() {
			switch l.GetName() {
			case "backend":
				b = l.GetValue()
			case "state":
				s = l.GetValue()
			}
		}
		if b == backend && s == state {
			return mt.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
