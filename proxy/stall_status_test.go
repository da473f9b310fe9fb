package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The status a timeout gets, wherever in a message's framing the peer
// stalls.

// TestClientStallInChunkFraming: a client that stalls while
// sending a chunked request body gets 408 after timeouts.client_read
// ("the client was too slow sending its request"), wherever in the chunk
// framing it stops, as it does mid-size, mid-data or mid-trailer.
//
// Three places gave "400 bad request" instead (found by review): after a
// chunk-size line's CR, inside a chunk extension, and after the last
// chunk ("0\r\n", waiting for the blank line that ends the trailer
// section). fasthttp wraps the read's deadline error in ErrBrokenChunk,
// which has no Unwrap, or returns its own ErrTimeout, which is no
// net.Error; the connection now says that its read timed out.
func TestClientStallInChunkFraming(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, "timeouts: { client_read: 400ms, idle: 5s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	const head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tt := range []struct{ name, sent string }{
		{"mid size line (passes)", head + "5"},
		{"mid data (passes)", head + "5\r\nhel"},
		{"after the size line's CR", head + "5\r"},
		{"in a chunk extension", head + "5;e"},
		{"after the last chunk", head + "5\r\nhello\r\n0\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := dialProxy(t, px.addr)
			start := time.Now()
			if _, err := io.WriteString(c, tt.sent); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(c)
			took := time.Since(start)
			if !strings.HasPrefix(string(got), "HTTP/1.1 408") {
				t.Errorf("a client that stalled at %q got %.40q after %v; want 408 after client_read (400ms)", tt.sent[len(head):], got, took)
			}
		})
	}
}

// TestBackendStallInChunkFraming: a backend that stalls while
// sending a chunked response body gets 504 after timeouts.response
// (README, Error codes: "the exchange ... did not finish within
// timeouts.response"), counted as a timeout against the backend,
// wherever in the chunk framing it stops.
//
// A stall after a chunk-size line's CR or inside a chunk extension got
// "502 upstream unavailable", recorded as kind "other" (bad_response),
// which outlier detection does not count, as fasthttp's ErrBrokenChunk
// hid the deadline (found by review). It gets 504.
func TestBackendStallInChunkFraming(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tt := range []struct{ name, sent string }{
		{"mid size line (passes)", head + "5"},
		{"mid data (passes)", head + "5\r\nhel"},
		{"after the size line's CR", head + "5\r"},
		{"in a chunk extension", head + "5;ext=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool {
				write(c, tt.sent)
				time.Sleep(1500 * time.Millisecond)
				return false
			})
			px := hbProxy(t, addr, "400ms")
			c, br := dialProxy(t, px.addr)
			start := time.Now()
			a := hbDo(c, br, "GET", "/bad")
			if a.err != nil || a.status != 504 {
				t.Errorf("a backend that stalled at %q: %d %q %v after %v; want 504 after timeouts.response (400ms)", tt.sent[len(head):], a.status, strings.TrimSpace(a.body), a.err, time.Since(start))
			}
		})
	}
}
