package proxy

import (
	"net"
	"testing"
)

// Found by review. What was wrong: a chunked response whose chunk-size lines end in CRLF but whose
// trailer section (the empty line after the last chunk, or a trailer
// field line) ends in a bare LF, e.g. "...0\r\n\n", is waited on until
// timeouts.response and answered 504 (counted as a timeout against the
// backend), although the whole response arrived at once. README
// (Forwarding): "A chunked body framed with bare LFs is not accepted
// (502)", and TestUpClientBareLFChunked pins "refused at once, not
// waited on" for the all-bare-LF case; nginx (ngx_http_parse_chunked,
// sw_trailer: "case LF: goto done") takes a bare LF there and passes the
// answer on. skipTrailer (upclient.go) ends only at a line that is
// exactly "\r\n" and keeps reading for one that never comes. Expected:
// an answer at once, 502 (or the 200 and its body, if bare LFs are
// accepted there); actual: 504 after timeouts.response.
func TestChunkedTrailerBareLFNotWaitedOn(t *testing.T) {
	for _, tc := range []struct{ name, resp string }{
		{"empty line bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n"},
		{"trailer field bare LF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The backend sends the whole answer and keeps the connection
			// open, as a keep-alive server does.
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, tc.resp) })
			px := hbProxy(t, addr, "3s")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, "GET", "/bad")
			if a.err != nil {
				t.Fatalf("no answer: %v", a.err)
			}
			ok := a.status == 502 || a.status == 200 && a.body == "hello"
			if !ok {
				t.Fatalf("got %d %q; want 502 (or 200 \"hello\") at once, not 504 after timeouts.response", a.status, a.body)
			}
			hbCheckGood(t, c, br, 1)
		})
	}
}
