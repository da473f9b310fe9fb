package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestSplicedMixedClients: many raw clients at once, each mixing
// spliced and buffered answers with pipelining, HEAD, HTTP/1.0,
// "Connection: close" and aborted connections, every body checked byte for
// byte (a pipe reused too early or written twice shows as another body's
// bytes), and every pipe closed once the connections are gone and the
// collector ran.
func TestSplicedMixedClients(t *testing.T) {
	b := patternBackend(t)
	px := startProxyOn(t, poolYAML("round_robin", []*testBackend{b}, nil), nil, func(ln net.Listener) net.Listener {
		return smallSendBuffers{ln}
	})
	sizes := []int{spliceMinBody, 40 << 10, 64 << 10, 100 << 10, pipeSize, 1000, 20 << 10, pipeSize + 1, 700 << 10, bigPipeSize + 1}
	type req struct {
		method string
		n, s   int
		proto  string
		close  bool
		alive  bool // HTTP/1.0 with "Connection: keep-alive"
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			deadline := time.Now().Add(4 * time.Second)
			for round := 0; round < 15 && time.Now().Before(deadline); round++ {
				conn, err := net.Dial("tcp", px.addr)
				if err != nil {
					errs <- err
					return
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(conn)
				var reqs []req
				k := 1 + rng.IntN(4)
				for i := range k {
					q := req{method: "GET", n: sizes[rng.IntN(len(sizes))], s: w*100000 + round*10 + i, proto: "HTTP/1.1"}
					switch rng.IntN(8) {
					case 0:
						q.method = "HEAD"
					case 1:
						q.proto = "HTTP/1.0"
					case 2:
						q.proto, q.alive = "HTTP/1.0", true
					}
					if i == k-1 && rng.IntN(3) == 0 {
						q.close = true
					}
					if q.proto == "HTTP/1.0" && (!q.alive || q.close) {
						// The connection ends after it: it is the last.
						reqs = append(reqs, q)
						break
					}
					reqs = append(reqs, q)
				}
				var out bytes.Buffer
				for _, q := range reqs {
					fmt.Fprintf(&out, "%s /%d/%d %s\r\nHost: x\r\n", q.method, q.n, q.s, q.proto)
					if q.close {
						out.WriteString("Connection: close\r\n")
					} else if q.alive {
						out.WriteString("Connection: keep-alive\r\n")
					}
					out.WriteString("\r\n")
				}
				pipelined := rng.IntN(2) == 0
				abort := rng.IntN(6) == 0
				if pipelined {
					_, _ = conn.Write(out.Bytes())
				}
				for i, q := range reqs {
					if !pipelined {
						var one bytes.Buffer
						fmt.Fprintf(&one, "%s /%d/%d %s\r\nHost: x\r\n", q.method, q.n, q.s, q.proto)
						if q.close {
							one.WriteString("Connection: close\r\n")
						} else if q.alive {
							one.WriteString("Connection: keep-alive\r\n")
						}
						one.WriteString("\r\n")
						if _, err := conn.Write(one.Bytes()); err != nil {
							errs <- fmt.Errorf("write: %v", err)
							break
						}
					}
					if abort && i == len(reqs)-1 {
						break
					}
					hreq, _ := http.NewRequest(q.method, "/", nil)
					resp, err := http.ReadResponse(r, hreq)
					if err != nil {
						errs <- fmt.Errorf("worker %d round %d answer %d (%s %d %s): %v", w, round, i, q.method, q.n, q.proto, err)
						break
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					want := seeded(q.n, q.s)
					if q.method == "HEAD" {
						want = nil
						if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(q.n) {
							errs <- fmt.Errorf("HEAD %d: Content-Length %q", q.n, cl)
						}
					}
					if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
						errs <- fmt.Errorf("worker %d round %d answer %d (%s %d %s): status %d, %d bytes (%v), intact %v",
							w, round, i, q.method, q.n, q.proto, resp.StatusCode, len(body), err, bytes.Equal(body, want))
						break
					}
				}
				if abort {
					_ = conn.(*net.TCPConn).SetLinger(0)
				}
				conn.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	pipesClosed(t, px)
}
