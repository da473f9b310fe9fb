package proxy

import (
	"net"
	"testing"
)

// TestTrailerThenReuse: after a chunked answer with a
// trailer section (a folded line included), or a HEAD/204/304 answer
// saying chunked without a body, the upstream connection is left at the
// next answer's first byte: the following requests reuse it and get their
// own answers.
func TestTrailerThenReuse(t *testing.T) {
	tests := []struct{ name, method, resp string }{
		{"trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n folded\r\n\r\n"},
		{"empty trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"204 chunked", "GET", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"304 chunked", "GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, tt.resp) })
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, tt.method, "/bad")
			if a.err != nil {
				t.Fatalf("%s /bad: %v", tt.method, a.err)
			}
			if a.header.Get("X-A") != "" || a.header.Get("X-B") != "" {
				t.Errorf("trailer fields reached the client as headers: %v", a.header)
			}
			hbCheckGood(t, c, br, 2)
			if n := conns.Load(); n != 1 {
				t.Errorf("backend connections = %d, want 1 (the one connection reused after the answer)", n)
			}
		})
	}
}
