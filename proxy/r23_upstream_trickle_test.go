package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// TestUpstreamTrickleBoundedByResponse: timeouts.response bounds
// the whole upstream exchange (README: "writing the request and reading
// the whole response"), not the gaps between reads. A backend that keeps
// sending one small piece every 20 ms, never pausing long, in each place
// a response can be stretched (its head, a chunked body, a
// Content-Length body read into a buffer or spliced through a pipe, a
// body that ends at the close, an HTTP/1.0 answer, a stream of 103
// Early Hints) is cut at timeouts.response with 504: the upstream
// connection is closed (the backend's writes fail soon after), the
// request is not retried (README, Retries: "Response timeouts are never
// retried"; two backends, one request each at most), the failure is
// counted as kind="timeout", and the client's connection stays usable.
func TestUpstreamTrickleBoundedByResponse(t *testing.T) {
	const response = 300 * time.Millisecond
	pad := "X-Pad: " + strings.Repeat("p", 100) + "\r\n"
	drip := func(c net.Conn, prefix, piece string, n int) error {
		if prefix != "" {
			if _, err := io.WriteString(c, prefix); err != nil {
				return err
			}
		}
		for range n {
			if _, err := io.WriteString(c, piece); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	modes := []struct {
		name  string
		serve func(c net.Conn) error
	}{
		{"head", func(c net.Conn) error {
			head := "HTTP/1.1 200 OK\r\n" + pad + "Content-Length: 2\r\n\r\nok"
			for i := range len(head) {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}},
		{"chunked body", func(c net.Conn) error {
			return drip(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "1\r\nx\r\n", 150)
		}},
		{"short Content-Length body", func(c net.Conn) error {
			return drip(c, "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n", "x", 150)
		}},
		{"spliced Content-Length body", func(c net.Conn) error {
			return drip(c, "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n"+strings.Repeat("s", 40000), strings.Repeat("x", 100), 150)
		}},
		{"close-delimited body", func(c net.Conn) error {
			return drip(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "x", 150)
		}},
		{"HTTP/1.0 body", func(c net.Conn) error {
			return drip(c, "HTTP/1.0 200 OK\r\n\r\n", "x", 150)
		}},
		{"103 Early Hints", func(c net.Conn) error {
			return drip(c, "", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 90)
		}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			var hits, cut atomic.Int64
			var closedAt atomic.Int64
			backend := func() net.Listener {
				return serveRaw(t, func(c net.Conn) {
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						if req.URL.Path == "/ok" {
							if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
								return
							}
							continue
						}
						hits.Add(1)
						if err := mode.serve(c); err != nil {
							cut.Add(1)
							closedAt.Store(time.Now().UnixNano())
						}
						return
					}
				})
			}
			a, b := backend(), backend()
			m := metrics.New("test")
			px := startProxyWith(t, fmt.Sprintf("timeouts: { response: %v }\nretries: { attempts: 3 }\nlimits: { max_response_bytes: 1048576 }\n"+
				"routes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: %s }\n      - { address: %s }\n",
				response, a.Addr(), b.Addr()), m)
			c, br := dialProxy(t, px.addr)
			start := time.Now()
			if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			var resp *http.Response
			hints := 0
			for {
				var err error
				resp, err = http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %d 103s, %v: %v", hints, time.Since(start), err)
				}
				if resp.StatusCode != http.StatusEarlyHints {
					break
				}
				hints++
			}
			body, _ := io.ReadAll(resp.Body)
			took := time.Since(start)
			if resp.StatusCode != http.StatusGatewayTimeout || !strings.HasPrefix(string(body), "504 ") {
				t.Fatalf("answer %d %q after %v, want 504: a backend that never pauses for timeouts.response (%v) held the exchange", resp.StatusCode, body, took, response)
			}
			if took < response-50*time.Millisecond || took > response+2*time.Second {
				t.Errorf("504 after %v, want about timeouts.response (%v) from the request", took, response)
			}
			if hints > maxHints {
				t.Errorf("%d 103s passed on, want at most %d", hints, maxHints)
			}
			// The proxy closed the upstream connection: the backend's
			// next writes fail.
			waitFor(t, "the backend to see its connection closed", 3*time.Second, func() bool { return cut.Load() == 1 })
			if d := time.Unix(0, closedAt.Load()).Sub(start); d > response+2*time.Second {
				t.Errorf("the backend's writes failed %v after the request, want soon after timeouts.response (%v)", d, response)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("the request reached the backends %d times, want 1: a response timeout is never retried", n)
			}
			// The client's connection outlives the 504.
			if a := hbDo(c, br, "GET", "/ok"); a.err != nil || a.status != http.StatusOK || a.body != "ok" {
				t.Errorf("after the 504, the next request on the client's connection: %d %q %v, want 200 ok", a.status, a.body, a.err)
			}
			var timeouts, retries float64
			for k, v := range gatherCounts(t, m, "sluice_upstream_errors_total") {
				if strings.Contains(k, `kind="timeout"`) {
					timeouts += v
				} else if v != 0 {
					t.Errorf("sluice_upstream_errors_total{%s} = %v, want 0", k, v)
				}
			}
			for _, v := range gatherCounts(t, m, "sluice_retries_total") {
				retries += v
			}
			if timeouts != 1 || retries != 0 {
				t.Errorf(`sluice_upstream_errors_total{kind="timeout"} = %v, sluice_retries_total = %v; want 1 and 0`, timeouts, retries)
			}
		})
	}
}
