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

	"sluice/metrics"
)

// countingBackend is an HTTP server that counts its open
// connections; /close answers with Connection: close, /slow waits.
type countingBackend struct {
	srv  *httptest.Server
	open atomic.Int64
}

func startCountingBackend(t *testing.T) *countingBackend {
	b := &countingBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.open.Add(-1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *countingBackend) addr() string { return b.srv.Listener.Addr().String() }

// TestMetricsUpstreamConnsTruth: sluice_upstream_connections
// against the connections the backend itself has open, after keep-alive,
// closing answers, a settings reload with requests in flight, and drains.
func TestMetricsUpstreamConnsTruth(t *testing.T) {
	b := startCountingBackend(t)
	m := metrics.New("test")
	cfg := func(resp string) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
timeouts: { response: %s }
drain_timeout: 5s
`, b.addr(), resp)
	}
	px := startProxyWith(t, cfg("5s"), m)
	gauge := func() float64 {
		v, _ := reviewGauge(t, m, "sluice_upstream_connections", b.addr())
		return v
	}
	check := func(step string) {
		t.Helper()
		var g float64
		ok := false
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if g = gauge(); g == float64(b.open.Load()) {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("%s: sluice_upstream_connections = %v, the backend has %d open", step, g, b.open.Load())
		}
	}
	par := func(n int, path string) {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get("http://" + px.addr + path)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	}
	par(5, "/slow")
	check("after 5 parallel keep-alive requests")
	par(3, "/close")
	check("after closing answers")
	done := make(chan struct{})
	go func() { defer close(done); par(4, "/slow") }()
	time.Sleep(100 * time.Millisecond)
	apply(t, px, cfg("6s")) // new client; the old one drains
	par(2, "/")
	<-done
	check("after a settings reload with requests in flight")
	time.Sleep(300 * time.Millisecond)
	check("after the old client drained")
}
