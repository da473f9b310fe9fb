package proxy

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamFailureMixSettles: a backend that answers at
// random (well, with Connection: close, chunked, a body cut short, or a
// reset after reading the request), under as many concurrent clients as
// max_conns_per_backend allows: no request gets the connection limit's
// 503 (each holds at most one connection at a time, and a failed one
// gives its slot back), every answer is the backend's 200 or a 502, and
// once idle every upstream connection is closed on both sides and
// nothing is counted in flight. Passing: a regression test.
func TestUpstreamFailureMixSettles(t *testing.T) {
	var open atomic.Int64
	var n atomic.Int64
	ln := serveRaw(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			k := n.Add(1)
			switch rand.Intn(6) {
			case 0:
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case 1:
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				return
			case 2:
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
				return
			case 3:
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			default:
				s := fmt.Sprint(k)
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
			}
		}
	})
	const workers = 4
	px := startProxy(t, fmt.Sprintf("timeouts: { upstream_idle: 400ms }\nlimits: { max_conns_per_backend: %d }\nretries: { attempts: 3 }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", workers, ln.Addr()))
	cl := testClient(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				m := "GET"
				if i%3 == 0 {
					m = "POST"
				}
				req, _ := http.NewRequest(m, "http://"+px.addr+"/", nil)
				code := -1
				if resp, err := cl.Do(req); err == nil {
					_, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for code, k := range codes {
		if code != 200 && code != 502 {
			t.Errorf("%d answers with status %d; want only 200 and 502 (all: %v)", k, code, codes)
		}
	}
	up := px.proxy.Current().pools["p"].targets[0]
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (up.client.ConnsCount() != 0 || open.Load() != 0) {
		time.Sleep(50 * time.Millisecond)
	}
	if c, o, f := up.client.ConnsCount(), open.Load(), up.client.InFlight(); c != 0 || o != 0 || f != 0 {
		t.Errorf("once idle: %d connections counted, %d open at the backend, %d in flight; want 0 each", c, o, f)
	}
}
