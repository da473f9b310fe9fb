package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"sluice/metrics"
)

// TestInFlightBalancedAfterMixedPaths: least_conn and p2c pools
// whose backends answer, reset after reading the request, refuse, or are
// slow, driven concurrently with clients that leave before their answer
// and a reload that replaces every upstream client (new timeouts) midway.
// Once all is done every backend's in-flight count (what least_conn and
// p2c balance on), every client's, sluice_requests_in_flight and the
// routes' in-flight counts are back at 0, and sluice_requests_total counts
// each request once.
func TestInFlightBalancedAfterMixedPaths(t *testing.T) {
	ok := startBackend(t, "ok", nil)
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow\n")
	})
	resetLn := serveRaw(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	})
	dead := freeAddr(t)
	m := metrics.New("test")
	yml := func(resp string) string {
		return fmt.Sprintf(`routes:
  - { match: { path_prefix: /q/ }, pool: q }
  - { pool: p }
pools:
  p: { algorithm: least_conn, backends: [{ address: %s }, { address: %s }, { address: %s }, { address: %s }] }
  q: { algorithm: p2c, backends: [{ address: %s }, { address: %s }, { address: %s }] }
retries: { attempts: 2 }
timeouts: { response: %s }
`, ok.addr(), slow.addr(), resetLn.Addr(), dead, ok.addr(), resetLn.Addr(), slow.addr(), resp)
	}
	px := startProxyWith(t, yml("2s"), m)

	const n = 120
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/"
			if i%3 == 0 {
				path = "/q/"
			}
			method := "GET"
			if i%4 == 1 {
				method = "POST" // not retried after a reset
			}
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s %s%d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path, i)
			if i%5 == 0 {
				time.Sleep(20 * time.Millisecond)
				return // leaves before the answer
			}
			_, _ = io.Copy(io.Discard, c)
		}()
		if i == n/2 {
			apply(t, px, yml("3s")) // every backend gets a new client
		}
	}
	wg.Wait()
	waitFor(t, "requests done", 5*time.Second, func() bool {
		return reviewSum(gatherCounts(t, m, "sluice_requests_total")) == n
	})
	// The counts drop after the request is counted: wait for them to
	// settle (bounded), then check each.
	s := px.proxy.Current()
	settled := func() bool {
		for _, pl := range s.pools {
			for _, up := range pl.targets {
				if up.client.InFlight() != 0 || up.backend.InFlight() != 0 {
					return false
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("sluice_requests_in_flight = %v, want 0", v)
	}
	if got := reviewSum(gatherCounts(t, m, "sluice_requests_total")); got != n {
		t.Errorf("sluice_requests_total sums to %v, want %d", got, n)
	}
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		for _, b := range p.Backends {
			if b.InFlight != 0 {
				t.Errorf("pool %s backend %s (%s): in_flight %d, want 0", p.Name, b.Address, b.Source, b.InFlight)
			}
		}
	}
	for _, pl := range s.pools {
		for _, up := range pl.targets {
			if v := up.client.InFlight(); v != 0 {
				t.Errorf("pool %s client of %s: in flight %d, want 0", pl.name, up.backend.Addr, v)
			}
		}
	}
	for _, r := range s.routes.any {
		if v := r.inFlight.Load(); v != 0 {
			t.Errorf("route %s: in flight %d, want 0", r.name, v)
		}
	}
	// Each upstream_duration sample is an answer passed on: no more than
	// the 2xx counted.
	var samples uint64
	for _, mt := range reviewFamily(t, m, "sluice_upstream_duration_seconds") {
		samples += mt.GetHistogram().GetSampleCount()
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if reviewSum(errs, `kind="reset"`) == 0 || reviewSum(errs, `kind="connect"`) == 0 {
		t.Errorf("the mix drove no reset or no connect failure: %v", errs)
	}
	reqs := gatherCounts(t, m, "sluice_requests_total")
	if ok2xx := reviewSum(reqs, `code="2xx"`); float64(samples) != ok2xx {
		t.Errorf("upstream_duration samples %d, 2xx answers %v", samples, ok2xx)
	}
}
