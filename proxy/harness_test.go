package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
	"sluice/metrics"
	"sluice/netconn"
)

// testBackend is a real HTTP server on 127.0.0.1 that counts what reaches it.
type testBackend struct {
	name  string
	srv   *httptest.Server
	hits  atomic.Int64
	conns atomic.Int64 // connections accepted
	mu    sync.Mutex
	last  *http.Request // the last request's headers (body already read)
	body  []byte
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

func (b *testBackend) lastRequest() (*http.Request, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.body
}

// startBackend serves handler (nil: 200 with the backend's name) and
// records each request.
func startBackend(t testing.TB, name string, handler http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.hits.Add(1)
		b.mu.Lock()
		b.last, b.body = r, body
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		if handler != nil {
			handler(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", name)
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

// testProxy is sluice's data plane and control plane on a real listener.
type testProxy struct {
	addr  string
	proxy *Proxy
	ctrl  *Controller
}

// startProxy parses yamlText (with %s placeholders already filled) and
// serves it on 127.0.0.1 with a random port.
func startProxy(t testing.TB, yamlText string) *testProxy {
	t.Helper()
	return startProxyWith(t, yamlText, nil)
}

// startProxyWith is startProxy with metrics (m may be nil).
func startProxyWith(t testing.TB, yamlText string, m *metrics.Metrics) *testProxy {
	t.Helper()
	return startProxyOn(t, yamlText, m, nil)
}

// startProxyOn is startProxyWith whose listener, netconn's as in
// cmd/sluice, is passed through wrap when wrap is not nil.
func startProxyOn(t testing.TB, yamlText string, m *metrics.Metrics, wrap func(net.Listener) net.Listener) *testProxy {
	t.Helper()
	return startProxyLogged(t, yamlText, m, wrap, zerolog.Nop())
}

// startProxyLogged is startProxyOn whose controller (and so the proxy's
// failure log) writes to log.
func startProxyLogged(t testing.TB, yamlText string, m *metrics.Metrics, wrap func(net.Listener) net.Listener, log zerolog.Logger) *testProxy {
	t.Helper()
	return startProxyTicked(t, yamlText, m, wrap, log, 0)
}

// startProxyTicked is startProxyLogged with the controller ticking every
// tick (0: its default), for tests that need its periodic work (drains
// ending, ejections expiring) slower or faster.
func startProxyTicked(t testing.TB, yamlText string, m *metrics.Metrics, wrap func(net.Listener) net.Listener, log zerolog.Logger, tick time.Duration) *testProxy {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("config.Parse() error: %v", err)
	}
	p := New()
	ctrl := NewController(p, log)
	ctrl.Metrics = m
	if tick > 0 {
		ctrl.tick = tick
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := netconn.NewListener(tcp)
	ClientTimeouts(nl, cfg) // as cmd/sluice serves it
	var ln net.Listener = nl
	if wrap != nil {
		ln = wrap(ln)
	}
	srv := NewFrontServer(p, cfg, zerolog.Nop())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.ShutdownWithContext(sctx)
		// A Serve that had not yet taken the listener when the shutdown
		// came (a test that sent nothing) would wait in Accept for good.
		_ = ln.Close()
		<-served
		cancel()
		<-done
	})
	return &testProxy{addr: ln.Addr().String(), proxy: p, ctrl: ctrl}
}

// dialProxy opens a client connection to the proxy at addr, under a 5 s
// deadline and closed when the test ends, with a reader over it.
func dialProxy(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

// client returns an HTTP client that keeps connections to the proxy alive.
func testClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends one request and returns status, the X-Backend header and body.
func get(t testing.TB, c *http.Client, url string, hdr map[string]string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(body)
}
