package proxy

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"sluice/config"
	"sluice/metrics"
)

// inMemoryRig is the whole request path — client, sluice's front server and
// handler, upstream client, upstream server — over in-memory listeners, so
// benchmarks measure sluice's code rather than the kernel's.
type inMemoryRig struct {
	client *fasthttp.HostClient
	stop   func()
}

func newInMemoryRig(tb testing.TB, backends int, m *metrics.Metrics) *inMemoryRig {
	tb.Helper()
	return newInMemoryRigPool(tb, "    algorithm: round_robin\n", false, backends, m)
}

// newInMemoryRigPool is newInMemoryRig with the pool's lines before its
// backends given (algorithm, hash_key, sticky, slow_start), and weights
// 1 to 3 when weighted.
func newInMemoryRigPool(tb testing.TB, poolLines string, weighted bool, backends int, m *metrics.Metrics) *inMemoryRig {
	tb.Helper()
	upLn := fasthttputil.NewInmemoryListener()
	body := make([]byte, 1024)
	upstream := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetBytesKV([]byte("X-Backend"), []byte("up"))
		ctx.SetBody(body)
	}}
	go func() { _ = upstream.Serve(upLn) }()

	yml := "routes:\n  - match: { path_prefix: / }\n    pool: p\npools:\n  p:\n" + poolLines + "    backends:\n"
	for i := range backends {
		// Distinct addresses, all dialled to the same in-memory upstream.
		weight := 1
		if weighted {
			weight += i % 3
		}
		yml += fmt.Sprintf("      - { address: 10.0.0.%d:80, weight: %d }\n", i+1, weight)
	}
	cfg, err := config.Parse("bench.yaml", []byte(yml))
	if err != nil {
		tb.Fatal(err)
	}
	p := New()
	ctrl := NewController(p, zerolog.Nop())
	ctrl.Dial = func(string) (net.Conn, error) { return upLn.Dial() }
	ctrl.Metrics = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		tb.Fatal(err)
	}
	frontLn := fasthttputil.NewInmemoryListener()
	front := &fasthttp.Server{Handler: p.Handle, NoDefaultServerHeader: true, NoDefaultContentType: true}
	go func() { _ = front.Serve(frontLn) }()
	client := &fasthttp.HostClient{
		Addr:                      "sluice",
		Dial:                      func(string) (net.Conn, error) { return frontLn.Dial() },
		MaxIdemponentCallAttempts: 1,
		MaxConns:                  1024,
	}
	return &inMemoryRig{client: client, stop: func() {
		client.CloseIdleConnections()
		_ = front.Shutdown()
		cancel()
		<-done
		_ = upstream.Shutdown()
	}}
}

// BenchmarkProxy drives plain GETs through the full handler, with metrics
// off and on (the hot-path cost of metrics is the difference).
func BenchmarkProxy(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchmarkProxy(b, nil) })
	b.Run("metrics=on", func(b *testing.B) { benchmarkProxy(b, metrics.New("bench")) })
}

func benchmarkProxy(b *testing.B, m *metrics.Metrics) {
	rig := newInMemoryRig(b, 2, m)
	defer rig.stop()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://sluice/index.html?x=1")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		for pb.Next() {
			// b.Error and return, not b.Fatal: this is a RunParallel
			// goroutine, not the benchmark's own.
			if err := rig.client.DoTimeout(req, resp, 5*time.Second); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 {
				b.Errorf("status %d", resp.StatusCode())
				return
			}
		}
	})
}

// BenchmarkEmptyLine is the look for the end of a response head that
// every upstream response now costs (readResponse): a typical head
// followed by a 1 KiB body, as the first read of scenario a brings it.
func BenchmarkEmptyLine(b *testing.B) {
	buf := append([]byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 19:30:00 GMT\r\n"+
		"Content-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Backend: up1\r\n\r\n"), make([]byte, 1024)...)
	b.ReportAllocs()
	for b.Loop() {
		if _, bare, ok := emptyLine(buf); bare || !ok {
			b.Fatal("head not found")
		}
	}
}

// BenchmarkBothLengths is the look for Content-Length beside
// Transfer-Encoding in each response head (lengthFields).
func BenchmarkBothLengths(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 19:30:00 GMT\r\n" +
		"Content-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Backend: up1\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if cl, te, _, _ := lengthFields(head); cl && te {
			b.Fatal("one length only")
		}
	}
}
