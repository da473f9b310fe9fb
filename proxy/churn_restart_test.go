package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// flappyBackend is an HTTP server on a fixed 127.0.0.1 port that can be
// stopped in several ways and started again on the same port.
type flappyBackend struct {
	t    *testing.T
	addr string
	h    http.HandlerFunc

	mu    sync.Mutex
	srv   *http.Server
	ln    net.Listener
	conns map[net.Conn]bool
	done  chan struct{}
}

func startFlappy(t *testing.T, h http.HandlerFunc) *flappyBackend {
	t.Helper()
	f := &flappyBackend{t: t, h: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serveOn(ln)
	t.Cleanup(func() { f.kill() })
	return f
}

func (f *flappyBackend) serveOn(ln net.Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ln, f.conns, f.done = ln, map[net.Conn]bool{}, make(chan struct{})
	srv := &http.Server{Handler: f.h, ConnState: func(c net.Conn, s http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch s {
		case http.StateNew:
			f.conns[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(f.conns, c)
		}
	}}
	f.srv = srv
	done := f.done
	go func() { defer close(done); _ = srv.Serve(ln) }()
}

// restart listens on the same port again (retrying while the port is
// still taken).
func (f *flappyBackend) restart() {
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		f.t.Errorf("restart on %s: %v", f.addr, err)
		return
	}
	f.serveOn(ln)
}

// shutdown stops it gracefully: no new connections, idle ones closed,
// requests in flight finish.
func (f *flappyBackend) shutdown() {
	f.mu.Lock()
	srv, done := f.srv, f.done
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	<-done
}

// kill stops it as a killed process would: the listener and every
// connection closed at once, requests in flight cut.
func (f *flappyBackend) kill() {
	f.mu.Lock()
	srv, done := f.srv, f.done
	f.mu.Unlock()
	_ = srv.Close()
	<-done
}

// TestChurnBackendRestarts: a pool of a stable backend and one
// that is stopped gracefully, killed, or left refusing connections, and
// started again on the same port, over and over, under load of keep-alive
// and non-keep-alive GETs and keep-alive POSTs. Every GET gets 200 (a
// connect refused is retried, a reset GET too); every POST reaches a
// backend at most once, and one that fails was cut by a kill.
func TestChurnBackendRestarts(t *testing.T) {
	l := newChurnLedger()
	h := churnHandler(l)
	stable, _ := startChurnBackend(t, "stable", h)
	flappy := startFlappy(t, h)
	var logBuf syncBuffer
	px := startProxyLogged(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
timeouts: { upstream_idle: 30s }
`, stable.addr(), flappy.addr), nil, nil, zerolog.New(&logBuf))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	wait := churnLoad(ctx, t, "http://"+px.addr+"/x", l, 6)
	var kills int
	for i := 0; ctx.Err() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		switch i % 3 {
		case 0:
			flappy.shutdown()
		case 1:
			flappy.kill()
			kills++
		case 2:
			flappy.shutdown()
			time.Sleep(100 * time.Millisecond) // refusing connections meanwhile
		}
		flappy.restart()
	}
	wait()

	// A GET is retried (connect refused on any method; a reset on an
	// idempotent one). A POST may fail where the backend reset the
	// connection it was on (a kill, or a graceful stop closing an idle
	// connection the POST had just reached: "a reset alone gets no such
	// pass", README, Retries), with a 502.
	total := l.check(t, func(f churnFailure) bool {
		return f.method == http.MethodPost && f.code == http.StatusBadGateway
	})
	t.Logf("%d requests, %d POSTs received, codes %v, %d kills", total, len(l.posts), l.codes, kills)
	if t.Failed() {
		t.Logf("log:\n%s", logBuf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
