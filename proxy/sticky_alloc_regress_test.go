//go:build !race

package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"sluice/config"
	"sluice/metrics"
)

// TestStickyHeldZeroAllocs: a request whose sticky cookie names a
// backend held at admin weight 0 (b14bfcb) allocates nothing, like a
// plain GET.
func TestStickyHeldZeroAllocs(t *testing.T) {
	upLn := fasthttputil.NewInmemoryListener()
	body := make([]byte, 1024)
	upstream := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go func() { _ = upstream.Serve(upLn) }()
	defer upstream.Shutdown()
	cfg, err := config.Parse("t.yaml", []byte("routes:\n  - pool: p\npools:\n  p:\n    algorithm: sticky\n    backends:\n      - { address: 10.0.0.1:80 }\n      - { address: 10.0.0.2:80 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := New()
	ctrl := NewController(p, zerolog.Nop())
	ctrl.Dial = func(string) (net.Conn, error) { return upLn.Dial() }
	ctrl.Metrics = metrics.New("test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.SetWeight(ctx, "p", "10.0.0.2:80", 0); err != nil {
		t.Fatal(err)
	}
	frontLn := fasthttputil.NewInmemoryListener()
	front := &fasthttp.Server{Handler: p.Handle, NoDefaultServerHeader: true, NoDefaultContentType: true}
	go func() { _ = front.Serve(frontLn) }()
	defer front.Shutdown()
	client := &fasthttp.HostClient{Addr: "sluice", Dial: func(string) (net.Conn, error) { return frontLn.Dial() }, MaxIdemponentCallAttempts: 1}
	defer client.CloseIdleConnections()

	held := p.Current().pools["p"]
	if held.picks != 1 || len(held.targets) != 2 {
		t.Fatalf("picks %d, targets %d, want 1 and 2", held.picks, len(held.targets))
	}
	cookie := ""
	for k, i := range held.stickyIndex {
		if i == 1 {
			cookie = k
		}
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice/x")
	req.Header.SetCookie("sluice_affinity", cookie)
	do := func() {
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 || len(resp.Header.PeekCookie("sluice_affinity")) != 0 {
			t.Fatalf("Do() = %v, status %d, set-cookie %q", err, resp.StatusCode(), resp.Header.PeekCookie("sluice_affinity"))
		}
	}
	for range 500 {
		do()
	}
	if got := testing.AllocsPerRun(1000, do); got != 0 {
		t.Errorf("allocs per sticky request to a held backend = %v, want 0", got)
	}
}
