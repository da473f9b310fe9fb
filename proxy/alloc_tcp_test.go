//go:build !race

package proxy

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/metrics"
)

// The in-memory rig of TestProxyZeroAllocs bypasses package netconn (its
// pipes have no socket). These run the production connection types over
// loopback TCP: netconn.NewListener in front (yield, lazy deadlines, the
// writev hold of long responses) and netconn.NewClient upstream (the write
// that waits for the response). Backends and client are fasthttp, which
// allocates nothing in steady state, so a count over the whole process is
// sluice's.

// tcpShape is one load shape of make bench.
type tcpShape struct {
	name   string
	method string
	path   string
	body   int // request body bytes
	want   int // response body bytes
}

var tcpShapes = []tcpShape{
	{"GET 1 KiB", fasthttp.MethodGet, "/1k", 0, 1 << 10},
	{"GET 64 KiB", fasthttp.MethodGet, "/64k", 0, 64 << 10},
	{"GET 512 KiB", fasthttp.MethodGet, "/512k", 0, 512 << 10}, // a big pipe
	{"POST 16 KiB", fasthttp.MethodPost, "/post", 16 << 10, 1 << 10},
}

// startFastBackend serves /64k with 64 KiB, /512k with 512 KiB and
// anything else with 1 KiB,
// from fixed buffers, on 127.0.0.1.
func startFastBackend(tb testing.TB) string {
	tb.Helper()
	small := bytes.Repeat([]byte("a"), 1<<10)
	large := bytes.Repeat([]byte("b"), 64<<10)
	huge := bytes.Repeat([]byte("c"), 512<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/64k":
				ctx.Response.SetBodyRaw(large)
				return
			case "/512k":
				ctx.Response.SetBodyRaw(huge)
				return
			}
			ctx.Response.SetBodyRaw(small)
		},
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		_ = srv.Shutdown()
		<-served
	})
	return ln.Addr().String()
}

// tcpRig is sluice over loopback TCP in front of two fasthttp backends,
// with a client to it.
func tcpRig(tb testing.TB, m *metrics.Metrics) *fasthttp.HostClient {
	tb.Helper()
	return tcpRigWith(tb, m, "")
}

// tcpRigWith is tcpRig with extra appended to sluice's config.
func tcpRigWith(tb testing.TB, m *metrics.Metrics, extra string) *fasthttp.HostClient {
	tb.Helper()
	yml := fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n"+
		"      - { address: %s }\n      - { address: %s }\n", startFastBackend(tb), startFastBackend(tb)) + extra
	px := startProxyWith(tb, yml, m)
	c := &fasthttp.HostClient{
		Addr: px.addr,
		// Its own dial: fasthttp's default dialer starts a cache-cleaning
		// goroutine that outlives the test.
		Dial:                func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) },
		MaxIdleConnDuration: time.Minute,
	}
	tb.Cleanup(c.CloseIdleConnections)
	return c
}

// exchange returns a func that sends one request of shape s through c
// and checks the answer, calling fail on a mismatch.
func exchange(c *fasthttp.HostClient, s tcpShape, fail func(string, ...any)) (do func(), release func()) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	// The client keeps its body buffer between requests: fasthttp lets a
	// long one go at each reset (its allocations are not sluice's).
	resp.KeepBodyBuffer = true
	req.SetRequestURI("http://sluice" + s.path)
	req.Header.SetMethod(s.method)
	if s.body > 0 {
		req.SetBodyRaw(bytes.Repeat([]byte("x"), s.body))
	}
	do = func() {
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			fail("%s: %v", s.name, err)
			return
		}
		if resp.StatusCode() != 200 || len(resp.Body()) != s.want {
			fail("%s: status %d, %d body bytes, want 200 and %d", s.name, resp.StatusCode(), len(resp.Body()), s.want)
		}
	}
	release = func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	return do, release
}

// TestProxyZeroAllocsTCP: once connections and pools are warm, a proxied
// request over real sockets allocates nothing, for each shape of make
// bench, with and without metrics, and with make bench's forwarding block
// (no header set) and the backend's address as Host (the client's Host
// then kept for the access log).
func TestProxyZeroAllocsTCP(t *testing.T) {
	const noForwarding = "preserve_host: false\nforwarding: { x_forwarded_for: pass, x_forwarded_proto: false, " +
		"x_forwarded_host: false, request_id: false }\n"
	for _, mt := range []struct {
		name  string
		m     *metrics.Metrics
		extra string
	}{{"metrics off", nil, ""}, {"metrics on", metrics.New("test"), ""}, {"no forwarding headers", nil, noForwarding}} {
		t.Run(mt.name, func(t *testing.T) {
			c := tcpRigWith(t, mt.m, mt.extra)
			for _, s := range tcpShapes {
				t.Run(s.name, func(t *testing.T) {
					do, release := exchange(c, s, t.Fatalf)
					defer release()
					for range 500 {
						do()
					}
					if got := testing.AllocsPerRun(1000, do); got != 0 {
						t.Errorf("allocs per proxied request = %v, want 0", got)
					}
				})
			}
		})
	}
}

// BenchmarkProxyTCP is BenchmarkProxy over loopback TCP and package
// netconn: one client connection, so ns/op is the round trip of client,
// sluice and backend together (all on this machine's cores); its use is
// allocs/op and comparing commits with benchstat, not absolute speed.
func BenchmarkProxyTCP(b *testing.B) {
	c := tcpRig(b, metrics.New("bench"))
	for _, s := range tcpShapes {
		b.Run(s.name, func(b *testing.B) {
			do, release := exchange(c, s, b.Fatalf)
			defer release()
			for range 100 {
				do()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				do()
			}
		})
	}
}
