package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dyingBackend serves keep-alive requests on raw connections. A
// /warm request is answered after warmDelay (so that concurrent ones open
// connections of their own). The first /x request overall is read whole
// and, after dieAfter, its connection is closed without an answer (a
// worker that died, or closed its keep-alive connection, with the request
// read); later /x requests are answered after answerAfter.
type dyingBackend struct {
	ln                               net.Listener
	warmDelay, dieAfter, answerAfter time.Duration
	xHits                            atomic.Int64
	conns                            atomic.Int64
}

func startDyingBackend(t *testing.T, warmDelay, dieAfter, answerAfter time.Duration) *dyingBackend {
	b := &dyingBackend{warmDelay: warmDelay, dieAfter: dieAfter, answerAfter: answerAfter}
	b.ln = serveRaw(t, func(c net.Conn) {
		b.conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if req.URL.Path == "/x" {
				if b.xHits.Add(1) == 1 {
					time.Sleep(b.dieAfter)
					return // serveRaw closes the connection: a FIN, no answer
				}
				time.Sleep(b.answerAfter)
			} else {
				time.Sleep(b.warmDelay)
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return b
}

// Found by review. What was wrong: the one more try an idempotent request gets when a reused
// connection breaks before any answer (errStaleConn, README "Idle upstream
// connections": "the request goes once more to the same backend on another
// connection") runs under the first try's deadline when it is sent on
// another kept-alive connection: forward passes the same `start` to every
// try of an attempt (handler.go, the `for try` loop), and upClient.do only
// restarts the clock for a new connection (`if !reused { now = time.Now() }`).
// So a backend that took 700 ms of a 1 s timeouts.response before closing
// the connection leaves the replay 300 ms, and a replay the backend answers
// in 400 ms gets 504 "upstream timed out" (counted as a timeout against
// the backend), while the same replay on a new connection gets a full
// timeouts.response and 200 (the second subtest shows it). README,
// Retries: "Timeouts are per attempt: each try gets its own
// timeouts.connect and timeouts.response". The same stale `start` also
// dates the idle check of the connection the replay takes (acquire's
// now-lastUse), so a connection idle past timeouts.upstream_idle can pass it.
// Expected: 200 in both cases; actual: 504 when an idle connection is there.
func TestStaleReplayGetsItsOwnResponseTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conns int // connections left idle before the request
	}{
		{"replay on another kept-alive connection", 2},
		{"replay on a new connection", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startDyingBackend(t, 150*time.Millisecond, 700*time.Millisecond, 400*time.Millisecond)
			px := startProxy(t, fmt.Sprintf(`routes: [{pool: p}]
pools:
  p:
    backends: [{address: %s}]
retries: { attempts: 1 }
timeouts: { response: 1s, upstream_idle: 10s }
`, b.ln.Addr()))
			var wg sync.WaitGroup
			codes := make([]int, tc.conns)
			for i := range tc.conns {
				wg.Go(func() { codes[i], _ = rawDo(t, px.addr, "GET", "/warm", "") })
			}
			wg.Wait()
			for i, c := range codes {
				if c != 200 {
					t.Fatalf("warm-up %d = %d, want 200", i, c)
				}
			}
			if got := b.conns.Load(); got != int64(tc.conns) {
				t.Fatalf("backend has %d connections after the warm-up, want %d", got, tc.conns)
			}
			start := time.Now()
			code, body := rawDo(t, px.addr, "GET", "/x", "")
			took := time.Since(start)
			if got := b.xHits.Load(); got != 2 {
				t.Fatalf("backend got /x %d times, want 2 (the try that died, then the replay)", got)
			}
			if code != 200 {
				t.Errorf("GET /x = %d %q after %v, want 200: the replay, answered in 400 ms, gets its own 1 s timeouts.response", code, body, took.Round(time.Millisecond))
			}
		})
	}
}
