package proxy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestRetriesLeaveRotation: with round robin over a backend that reads
// each request and resets the connection and one that answers, the resetting one gets exactly
// its half of the first tries. Retries used to advance the shared
// rotation too, so every request met the resetting backend first (23
// retries in 24 requests, found by review) and with two such backends
// half the requests failed.
func TestRetriesLeaveRotation(t *testing.T) {
	var resets atomic.Int64
	bad := serveRaw(t, func(c net.Conn) {
		// The request is read first: sent whole, it is not one the
		// upstream client may send again on a new connection to the same
		// backend (a connection closed before the request reached it).
		var req fasthttp.Request
		if req.Read(bufio.NewReader(c)) == nil {
			resets.Add(1)
		}
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	// good closes each connection after one answer without saying so: a
	// request can meet that close on a reused connection (CI saw one
	// under load), which is sent again on a new one (staleConnError),
	// not counted as a retry to bad.
	good := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	px := startProxy(t, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }\nretries: { attempts: 2 }\n",
		bad.Addr(), good.ln.Addr()))
	const n = 40
	for i := range n {
		if out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("request %d: proxy answered %q", i, out)
		}
	}
	if got := resets.Load(); got != n/2 {
		t.Errorf("the resetting backend took %d of %d first tries, want %d (its turn in the rotation)", got, n, n/2)
	}
}
