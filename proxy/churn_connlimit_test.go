package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestChurnConnLimitAcrossReloads: limits.max_conns_per_backend
// bounds the connections sluice opens to one backend ("upstream
// connections per backend"; beyond it the request is retried elsewhere or
// gets 503). Two slow requests hold the backend's two connections; then
// a reload that changes only timeouts.response (a new client for the
// backend, the old one draining with its busy connections), or one that
// removes the backend and adds it back at once. Requests sent after it
// must not open more connections to the backend than the limit.
//
// Before the fix (found by review): each upstream client has its own max_conns_per_backend slots
// (newUpClient: slots sized by s.maxConns), and a reload that replaces a
// backend's client (new upstream settings, in reconcile's
// `m.settings != settings` branch) or re-adds a backend still draining
// (`drainingOf`) gives it a fresh client with every slot free while the
// old client's busy connections stay open. So the backend gets up to
// twice the limit after one reload, and k+1 times it after k reloads
// while long requests run (a deploy that reloads a few times). Expected:
// at most 2 connections open at the backend at once; actual: 4. The
// clients of one backend already share their count of open connections
// (upClient.open); a fix is to take a connection only while that shared
// count is below maxConns (a CAS loop in dialSlot), so that the limit
// holds over every client of the backend.
func TestChurnConnLimitAcrossReloads(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reload func(t *testing.T, px *testProxy, addr, other string)
	}{
		{"new upstream settings", func(t *testing.T, px *testProxy, addr, _ string) {
			apply(t, px, connLimitYAML(addr, "6s"))
		}},
		{"removed and added back", func(t *testing.T, px *testProxy, addr, other string) {
			apply(t, px, connLimitYAML(other, "5s"))
			apply(t, px, connLimitYAML(addr, "5s"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, free, open, peak := gatedBackend(t, func(string) bool { return true })
			other, _ := startChurnBackend(t, "other", func(w http.ResponseWriter, r *http.Request) {})
			px := startProxy(t, connLimitYAML(addr, "5s"))

			var wg sync.WaitGroup
			codes := make(chan int, 16)
			send := func() {
				defer wg.Done()
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := c.Get("http://" + px.addr + "/")
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}
			for range 2 {
				wg.Add(1)
				go send()
			}
			waitFor(t, "2 connections at the backend", 5*time.Second, func() bool { return open.Load() == 2 })
			tc.reload(t, px, addr, other.addr())
			for range 2 {
				wg.Add(1)
				go send()
			}
			// Give the later requests time to reach the backend if they
			// are let through.
			time.Sleep(500 * time.Millisecond)
			if n := peak.Load(); n > 2 {
				t.Errorf("connections open at the backend at once = %d, want at most max_conns_per_backend (2)", n)
			}
			free()
			wg.Wait()
			close(codes)
			for c := range codes {
				if c != 200 && c != 503 {
					t.Errorf("status %d, want 200 or 503", c)
				}
			}
		})
	}
}

// connLimitYAML is one pool of the one backend addr, with a limit of 2
// connections per backend and the given response timeout.
func connLimitYAML(addr, response string) string {
	return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
limits: { max_conns_per_backend: 2 }
drain_timeout: 10s
timeouts: { response: %s, upstream_idle: 30s }
`, addr, response)
}

// gatedBackend starts a backend whose answers to the paths gated says
// wait until free is called (or the test ends), and that counts its open
// connections and their peak.
func gatedBackend(t *testing.T, gated func(path string) bool) (addr string, free func(), open, peak *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	free = func() { once.Do(func() { close(release) }) }
	open, peak = new(atomic.Int64), new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gated(r.URL.Path) {
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			n := open.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(free) // before Close, which waits for the handlers
	return srv.Listener.Addr().String(), free, open, peak
}
