package proxy

import (
	"net"
	"strings"
	"testing"
)

// Found by review. What was wrong: a chunked response that announces a trailer field ("Trailer:
// Server-Timing") and also carries that field in its header section
// loses the header field, even when no trailer comes at all (an empty
// trailer section, "0\r\n\r\n"). README (Forwarding): "Trailer fields
// of a chunked message are dropped ... in a response, a header that a
// trailer repeats is dropped with it": here no trailer repeats it, and
// RFC 9110 §6.6.2 makes Trailer only a hint of what may come after the
// body; a header-section field is end to end and must be forwarded
// (Server-Timing is specified to be sent both ways, as are grpc-status
// style fields). The same response framed by Content-Length keeps it.
// Cause: Proxy.forward calls dropTrailers(&resp.Header, nil, ...)
// (proxy/handler.go, general path), which deletes every name the
// Trailer field announces (h.Trailers()) with DelBytes, and fasthttp's
// DelBytes removes the header section's fields of that name as well as
// the trailer section's. Fix: delete only fields that arrived in the
// trailer section (fasthttp keeps them apart, in the trailer args, until
// Trailer is deleted), e.g. by comparing with the head's own fields
// (the raw head is at hand in readResponse) and restoring the header
// values after the delete.
func TestAnnouncedTrailerKeepsHeaderField(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nServer-Timing: db;dur=53\r\nTrailer: Server-Timing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, resp) })
	px := hbProxy(t, addr, "500ms")
	c, br := dialProxy(t, px.addr)
	a := hbDo(c, br, "GET", "/bad")
	if a.err != nil || a.status != 200 || a.body != "hello" {
		t.Fatalf("got %d %q %v", a.status, a.body, a.err)
	}
	if got := a.header.Get("Server-Timing"); got != "db;dur=53" {
		t.Errorf("Server-Timing = %q, want the header field the backend sent (%q); no trailer came", got, "db;dur=53")
	}
	hbCheckGood(t, c, br, 1)
}

// TestResponseTrailerSection: a response's trailer section is read past
// and dropped, the header fields it repeats kept as the head had them;
// one over 16 KiB, or cut by a close, gets 502.
func TestResponseTrailerSection(t *testing.T) {
	tests := []struct {
		name, resp string
		status     int
		timing     string
	}{
		{"trailer repeats a header", "HTTP/1.1 200 OK\r\nServer-Timing: head\r\nTrailer: Server-Timing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nServer-Timing: trailer\r\n\r\n", 200, "head"},
		{"too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + strings.Repeat("X-T: "+strings.Repeat("t", 1000)+"\r\n", 17) + "\r\n", 502, ""},
		{"cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n", 502, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { write(c, tt.resp); return false })
			px := hbProxy(t, addr, "500ms")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, "GET", "/bad")
			if a.err != nil || a.status != tt.status {
				t.Fatalf("got %d %q %v, want %d", a.status, a.body, a.err, tt.status)
			}
			if got := a.header.Get("Server-Timing"); got != tt.timing {
				t.Errorf("Server-Timing = %q, want %q", got, tt.timing)
			}
		})
	}
}
