package proxy

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Before the fix (found by review): after a reload that gives a backend a new client (new upstream
// settings), the replaced client's idle connections still count against
// max_conns_per_backend, and nothing uses or closes them while that
// client has a request in flight: the new client gets 503 "upstream
// connection limit reached" for as long as one long request of the old
// client runs (up to drain_timeout), at a backend that has only that one
// connection busy. Expected: 200 (the limit is 2; one connection is
// busy, the other idle in a client no request will use again). Actual:
// 503. Cause: dialSlot now reserves from the shared open count (upClient.
// open), but Controller.drain leaves the replaced client's idle
// connections open; finishDrains closes them (client.Close) only once
// its in-flight count is 0 or the drain deadline passed, and the idle
// sweep only after upstream_idle. (With nothing in flight it is still up
// to a tick, 100 ms, of 503s after every such reload.) Fix: close a
// draining client's idle connections when it starts draining, and each
// one given back from then on (call client.Close() in Controller.drain,
// or mark it closed there); or let dialSlot, at the limit, close an idle
// connection of a draining client sharing the count.
func TestReplacedClientIdleConnsFreeLimit(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	b, open := startChurnBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	t.Cleanup(free) // before the backend's Close, which waits for handlers
	px := startProxy(t, connLimitYAML(b.addr(), "5s"))
	c := testClient(t)

	slow := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + px.addr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	waitFor(t, "the slow request's connection", 5*time.Second, func() bool { return open.n.Load() == 1 })
	// A second connection, idle once this answer is read.
	if code, _, _ := get(t, c, "http://"+px.addr+"/fast", nil); code != 200 {
		t.Fatalf("GET /fast before the reload = %d, want 200", code)
	}
	apply(t, px, connLimitYAML(b.addr(), "6s")) // new settings: a new client
	time.Sleep(300 * time.Millisecond)          // a few controller ticks
	code, _, body := get(t, c, "http://"+px.addr+"/fast", nil)
	if code != 200 {
		t.Errorf("GET /fast after the reload = %d %q, want 200 (one of 2 connections busy, the other idle in the replaced client)", code, body)
	}
	if n := open.n.Load(); n > 2 {
		t.Errorf("connections open at the backend = %d, want at most 2", n)
	}
	free()
	if s := <-slow; s != 200 {
		t.Errorf("GET /slow = %d, want 200", s)
	}
}
