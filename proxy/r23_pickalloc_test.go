//go:build !race

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
)

// r23Rig is newInMemoryRig with the pool's algorithm lines given.
func r23Rig(t *testing.T, poolLines string, backends int) *inMemoryRig {
	t.Helper()
	upLn := fasthttputil.NewInmemoryListener()
	body := make([]byte, 1024)
	upstream := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetBytesKV([]byte("X-Backend"), []byte("up"))
		ctx.SetBody(body)
	}}
	go func() { _ = upstream.Serve(upLn) }()
	yml := "routes:\n  - match: { path_prefix: / }\n    pool: p\npools:\n  p:\n" + poolLines + "    backends:\n"
	for i := range backends {
		yml += fmt.Sprintf("      - { address: 10.0.0.%d:80, weight: %d }\n", i+1, 1+i%3)
	}
	cfg, err := config.Parse("bench.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	p := New()
	ctrl := NewController(p, zerolog.Nop())
	ctrl.Dial = func(string) (net.Conn, error) { return upLn.Dial() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
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

// TestLBZeroAllocsEveryAlgorithm: README (Design): the request
// path allocates nothing in steady state; (Balancing algorithms) "A pick
// takes no lock, makes no allocation". TestProxyZeroAllocs drives only
// round_robin; this drives a proxied GET through every algorithm and
// every hash_key kind, with weights. Holds.
func TestLBZeroAllocsEveryAlgorithm(t *testing.T) {
	for _, tc := range []struct{ name, lines, cookie string }{
		{"p2c", "    algorithm: p2c\n", ""},
		{"random", "    algorithm: random\n", ""},
		{"least_conn", "    algorithm: least_conn\n", ""},
		{"ewma", "    algorithm: ewma\n", ""},
		{"ring_hash/path", "    algorithm: ring_hash\n    hash_key: path\n", ""},
		{"ring_hash/header", "    algorithm: ring_hash\n    hash_key: header:X-Forwarded-For\n", ""},
		{"maglev/query", "    algorithm: maglev\n    hash_key: query:x\n", ""},
		{"maglev/cookie", "    algorithm: maglev\n    hash_key: cookie:u\n", "u=alice"},
		{"maglev/host", "    algorithm: maglev\n    hash_key: host\n", ""},
		{"maglev/source_ip", "    algorithm: maglev\n    hash_key: source_ip\n", ""},
		{"sticky/no cookie", "    algorithm: sticky\n", ""},
		{"slow_start p2c", "    algorithm: p2c\n    slow_start: 1h\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := r23Rig(t, tc.lines, 3)
			defer rig.stop()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://sluice/index.html?x=1")
			req.Header.Set("X-Forwarded-For", "198.51.100.7")
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			do := func() {
				if err := rig.client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					t.Fatalf("Do() = %v, status %d", err, resp.StatusCode())
				}
			}
			for range 1000 {
				do()
			}
			if got := testing.AllocsPerRun(2000, do); got != 0 {
				t.Errorf("allocs per proxied GET = %v, want 0", got)
			}
		})
	}
}
