package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUppoolWorkersConnLimitPerWorker: limits.max_conns_per_backend is
// per process, as README says since session 25 (review found it silent,
// beside max_client_conns's "each worker has its own"): with `-workers 2`
// and a limit of 1, eight requests held by the backend, each on a client
// connection of its own (spread over the workers by SO_REUSEPORT), never
// have more than 2 connections open at the backend at once, and each
// worker lets one through.
func TestUppoolWorkersConnLimitPerWorker(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var open, peak, reached atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			reached.Add(1)
			select {
			case <-release:
			case <-time.After(8 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			n := open.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(free)

	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, r25WorkersConfig(listen, adminPort, "limits: {max_conns_per_backend: 1}\ntimeouts: {response: 9s}\n", srv.Listener.Addr().String()))
	r25WorkersStart(t, path, 2)
	for i := range 2 {
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort+i))
	}
	codes := make(chan int, 8)
	for range 8 {
		go func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + listen + "/hold")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Let the requests that are let through reach the backend.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && reached.Load() < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	held := reached.Load()
	free()
	ok := 0
	for range 8 {
		if c := <-codes; c == 200 {
			ok++
		}
	}
	t.Logf("%d requests held at the backend at once, %d of 8 answered 200, peak %d connections", held, ok, peak.Load())
	if p := peak.Load(); p > 2 || p < 1 {
		t.Errorf("with -workers 2 the backend had %d connections open at once, want 1 or 2: max_conns_per_backend (1) per worker", p)
	}
	if held < 1 || held > 2 || ok < 1 || ok > 2 {
		t.Errorf("%d requests held at once, %d answered 200; want 1 or 2 of each (one per worker that got a connection)", held, ok)
	}
}
