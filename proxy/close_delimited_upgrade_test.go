package proxy

import (
	"bufio"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/metrics"
)

// Found by review. What was wrong: a response framed by the close of its connection (no
// Content-Length, no Transfer-Encoding) whose Connection field names
// "upgrade" (Apache with mod_http2 adds "Upgrade: h2,h2c" and
// "Connection: Upgrade" to its HTTP/1.1 answers) is read to the
// backend's close, and then its dead connection is put back on the idle
// stack as if it could be reused. fasthttp marks a close-delimited
// response ConnectionClose() except when its Connection field says
// upgrade (ResponseHeader.parseHeaders: `contentLength == -2 &&
// !h.ConnectionUpgrade()`), and upClient.do (proxy/upclient.go, the
// `case extra || resp.ConnectionClose() || ...` switch) trusts
// ConnectionClose() alone. The next request's idle check then finds the
// connection closed and counts sluice_upstream_errors_total{kind="idle"},
// which README (Metrics) reads as a backend keep-alive timeout below
// timeouts.upstream_idle, for a backend that closed exactly where its
// framing said it would; the dead connection also holds one of
// max_conns_per_backend's slots until then. Want: no idle error; a
// connection whose body was read to its close is discarded. Fix: in
// upClient.do, discard the connection when the response had no length
// (resp.Header.ContentLength() == -2 after a body read, or
// !cl && !te && the status has a body) whatever its Connection field.
func TestCloseDelimitedUpgradeConnNotReused(t *testing.T) {
	var conns atomic.Int64
	ln := serveRaw(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		var req fasthttp.Request
		if err := req.Read(br); err != nil {
			return
		}
		if string(req.URI().Path()) == "/first" {
			// Close-delimited, then closed (serveRaw closes on return).
			write(c, "HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade\r\n\r\nuntil-close")
			return
		}
		write(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnext")
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\n", ln.Addr()), m)
	c, br := dialProxy(t, px.addr)
	a := hbDo(c, br, "GET", "/first")
	if a.err != nil || a.status != 200 || a.body != "until-close" {
		t.Fatalf("first: %d %q %v", a.status, a.body, a.err)
	}
	time.Sleep(50 * time.Millisecond) // the backend's FIN is in
	a = hbDo(c, br, "GET", "/second")
	if a.err != nil || a.status != 200 || a.body != "next" {
		t.Fatalf("second: %d %q %v", a.status, a.body, a.err)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if v := reviewSum(errs, `kind="idle"`); v != 0 {
		t.Errorf("upstream_errors_total{kind=\"idle\"} = %v after a close-delimited answer whose connection closed as framed, want 0 (the connection was put back idle after its close): %v", v, errs)
	}
}
