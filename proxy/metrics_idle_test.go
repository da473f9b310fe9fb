package proxy

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"sluice/metrics"
)

// TestMetricsIdleKindOnFreshConns: a backend that accepts every
// connection and closes it at once, before reading a byte (a service
// shedding load at accept, a port held by a dying process). No connection
// to it is ever kept alive, so none can be an idle one found dead.
//
// Before the fix (found by review): sluice_upstream_errors_total{kind="idle"} grows by up to 7 per
// request (observed 7, 14, 21 for 3 requests), and the backend accepts up
// to 8 connections per request, while the access log says attempts 1,
// upstream_error "reset". README: kind="idle" is "not a failed request: a
// kept-alive connection the backend had closed ... while idle ...; many
// mean a backend keep-alive timeout below timeouts.upstream_idle" — here
// it reports a backend that refuses every connection as a keep-alive
// misconfiguration. Cause: upClient.do returns errClosedBeforeRequest
// (which wraps netconn.ErrIdleClosed) whenever RequestUnreceived() holds,
// without looking at reused, so a fresh connection the backend closed
// before the request reached it takes the idle path of Proxy.forward: a
// KindIdle count and another try on the same backend, up to
// maxIdleRetries, the last failure then counted as "reset". Fix: return
// errClosedBeforeRequest only for a reused connection; on a fresh one the
// request never reached the backend, which is a failed attempt (count it
// as kind="connect" and let retries move on to another backend, as for a
// refused dial), not an idle connection.
func TestMetricsIdleKindOnFreshConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
retries: { attempts: 1 }
`, ln.Addr()), m)
	const n = 10
	for range n {
		if code := rawStatus(t, px.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"); code != 502 {
			t.Fatalf("status %d, want 502", code)
		}
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if v := reviewSum(errs, `kind="idle"`); v != 0 {
		t.Errorf("upstream_errors_total{kind=\"idle\"} = %v for %d requests to a backend that never kept a connection alive "+
			"(%d connections accepted), want 0: %v", v, n, accepted.Load(), errs)
	}
	if failed := reviewSum(errs) - reviewSum(errs, `kind="idle"`); failed != n {
		t.Errorf("failed attempts counted = %v, want %d (one per request, as the access log's attempts say)", failed, n)
	}
}
