package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// TestNoRetryOnceReceived covers, end to end through forward, the
// retry decision after a connection to a backend broke once the request
// had reached it (before: only connection refused, TestRetryOnRefused,
// and the idle close, TestIdleConnectionChecked, went through forward;
// upClient's and netconn's tests stop below it). Each backend reads all
// or part of the request and then closes, resets, or answers 408 and
// closes. A POST must reach one backend once and never go again; a GET is
// retried on the other backend, and sluice_retries_total counts exactly
// the attempts after the first.
func TestNoRetryOnceReceived(t *testing.T) {
	const body = "0123456789abcdef0123456789abcdef"
	modes := []struct {
		name string
		// act runs on a connection after the backend read n bytes of the
		// request (0: the whole of it).
		n   int
		act func(c net.Conn)
		// the answer a POST gets
		code int
	}{
		{"read whole, close", 0, func(c net.Conn) { c.Close() }, 502},
		{"read whole, reset", 0, func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }, 502},
		{"read part, close (reset: rest unread)", 20, func(c net.Conn) { c.Close() }, 502},
		{"read part, 408 and close", 20, func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			time.Sleep(20 * time.Millisecond)
			c.Close()
		}, 408},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			var got atomic.Int64 // connections on which any of a request arrived
			handle := func(c net.Conn) {
				br := bufio.NewReader(c)
				if mode.n > 0 {
					buf := make([]byte, mode.n)
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					got.Add(1)
				} else {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					got.Add(1)
					_, _ = io.Copy(io.Discard, req.Body)
				}
				mode.act(c)
			}
			a, b := serveRaw(t, handle), serveRaw(t, handle)
			m := metrics.New("test")
			px := startProxyWith(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
`, a.Addr(), b.Addr()), m)
			retries := func() float64 {
				s := 0.0
				for _, v := range gatherCounts(t, m, "sluice_retries_total") {
					s += v
				}
				return s
			}
			for _, tt := range []struct {
				method      string
				code, reach int
				retried     float64
			}{
				{"POST", mode.code, 1, 0},
				{"GET", mode.code, 2, 1},
			} {
				if mode.code == 408 {
					tt.reach, tt.retried = 1, 0 // an answer, passed on
				} else if tt.method == "GET" {
					tt.code = 502
				}
				got.Store(0)
				before := retries()
				c, br := dialProxy(t, px.addr)
				reqBody := ""
				if tt.method == "POST" {
					reqBody = body
				}
				fmt.Fprintf(c, "%s /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", tt.method, len(reqBody), reqBody)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", tt.method, err)
				}
				resp.Body.Close()
				time.Sleep(50 * time.Millisecond) // any second attempt has arrived
				if resp.StatusCode != tt.code || got.Load() != int64(tt.reach) || retries()-before != tt.retried {
					t.Errorf("%s = %d, reached backends %d times, sluice_retries_total +%v; want %d, %d, +%v",
						tt.method, resp.StatusCode, got.Load(), retries()-before, tt.code, tt.reach, tt.retried)
				}
			}
		})
	}
}
