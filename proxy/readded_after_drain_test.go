package proxy

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"sluice/metrics"
)

func readdYAML(addr string) string {
	return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
limits: { max_conns_per_backend: 1 }
drain_timeout: 200ms
timeouts: { response: 5s, upstream_idle: 30s }
`, addr)
}

// Found by review. What was wrong: limits.max_conns_per_backend stops holding, and
// sluice_upstream_connections stops counting, for a backend that is
// removed and added back after its drain_timeout while a request it
// had in flight still runs. finishDrains (control.go) drops the drained
// client from c.draining at the deadline though its request (and so its
// connection) is still open ("Requests still running at the deadline are
// not cut"), so reconcile's drainingOf finds nothing when the backend
// comes back and the new client gets a fresh `open` count
// (newUpClient's new(atomic.Int64)) instead of the old one's. README,
// limits.max_conns_per_backend: "The connections a reload's old upstream
// client still has open (busy ones, until they finish ...) count too, so a
// reload during long requests never lets a backend get more"; Metrics:
// sluice_upstream_connections is "Open connections to each backend, idle
// or busy". Expected, with a limit of 1 and one long request still on
// the backend's only connection: the next request gets 503 (conn_limit)
// without a second connection, and the gauge says 1; actual: a second
// connection is opened (2 at the backend at once) and the gauge said 0
// before it. A fix: keep the client listed (or its `open` count
// remembered per backend) until its in-flight count reaches 0, not only
// until the deadline; or keep the per-backend `open` counter in a map on
// the controller that outlives any one client.
func TestReaddedAfterDrainDeadlineKeepsConnLimit(t *testing.T) {
	addr, free, open, peak := gatedBackend(t, func(path string) bool { return path == "/slow" })
	other := startBackend(t, "other", nil)
	m := metrics.New("test")
	px := startProxyWith(t, readdYAML(addr), m)

	slow := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + px.addr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	waitFor(t, "the slow request's connection at the backend", 5*time.Second, func() bool { return open.Load() == 1 })

	apply(t, px, readdYAML(other.addr()))
	// Past drain_timeout the drain is overdue: still listed as leaving
	// while its request runs (since session 25), no longer draining.
	waitFor(t, "the removed backend's drain to be overdue", 5*time.Second, func() bool {
		n := -1
		_ = px.ctrl.do(context.Background(), func() error { n = len(px.ctrl.draining); return nil })
		return n == 0
	})
	apply(t, px, readdYAML(addr))
	if open.Load() != 1 {
		t.Fatalf("backend has %d connections open, want 1 (the slow request's)", open.Load())
	}
	gauge := gatherCounts(t, m, "sluice_upstream_connections")
	key := fmt.Sprintf("pool=%q,backend=%q", "p", addr)
	if got := gauge[key]; got != 1 {
		t.Errorf("sluice_upstream_connections{%s} = %v while the slow request holds a connection, want 1", key, got)
	}

	code, body := rawDo(t, px.addr, "GET", "/fast", "")
	if n := peak.Load(); n > 1 {
		t.Errorf("connections open at the backend at once = %d (GET /fast = %d %q), want at most max_conns_per_backend (1): the request still running on the re-added backend's old client holds one", n, code, body)
	}
	free()
	if c := <-slow; c != 200 {
		t.Errorf("slow request = %d, want 200 (not cut by the drain deadline)", c)
	}
}
