package proxy

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// Found by review (a differential run against nginx). What was wrong: a
// response's Trailer field could get the client a 502. fasthttp fails a
// whole head whose Trailer has an empty list element (RFC 9110 §5.6.1.2:
// to be ignored) or names a field it bars from trailers (Set-Cookie,
// Content-Type, ...), also where no trailer can come (a Content-Length
// answer) and on a 103. Trailer is only a hint (RFC 9110 §6.6.2), sluice
// drops it as hop-by-hop and skips the trailer section itself, and nginx
// passes these answers on; now the head is read without its Trailer lines.
func TestResponseTrailerFieldNeverFails(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
		reused     bool // the upstream connection serves the next request
	}{
		{"empty element inside", "HTTP/1.1 200 OK\r\nTrailer: Server-Timing, , X-Debug\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"leading comma", "HTTP/1.1 200 OK\r\nTrailer: , Server-Timing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"barred name, Content-Length framed", "HTTP/1.1 200 OK\r\nSet-Cookie: s=1\r\nTrailer: Set-Cookie\r\nContent-Length: 5\r\n\r\nhello", true},
		{"barred name, chunked, no trailer sent", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTrailer: Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
		{"chunked, a trailer sent", "HTTP/1.1 200 OK\r\nTrailer: Server-Timing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nServer-Timing: db;dur=5\r\n\r\n", true},
		{"barred name folded onto the next line", "HTTP/1.1 200 OK\r\nTrailer: X-A,\r\n Set-Cookie\r\nX-After: 1\r\nContent-Length: 5\r\n\r\nhello", true},
		{"bare-LF head", "HTTP/1.1 200 OK\nTrailer: Set-Cookie\nContent-Length: 5\n\nhello", false},
		{"on a 103", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nTrailer: Set-Cookie\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true},
		{"stray bytes after the answer", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 5\r\n\r\nhelloXX", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, tt.resp) })
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, "GET", "/bad")
			if a.err == nil && a.status == 103 { // passed on; the final answer follows
				resp, err := http.ReadResponse(br, nil)
				a = hbAnswer{err: err}
				if err == nil {
					body, err := io.ReadAll(resp.Body)
					a = hbAnswer{status: resp.StatusCode, header: resp.Header, body: string(body), err: err}
				}
			}
			if a.err != nil || a.status != 200 || a.body != "hello" {
				t.Fatalf("got %d %q %v; want the backend's 200 %q", a.status, a.body, a.err, "hello")
			}
			if a.header.Get("Trailer") != "" {
				t.Errorf("Trailer passed on: %v", a.header)
			}
			hbCheckGood(t, c, br, 1)
			// Only a head sluice cannot trust, or bytes past the answer,
			// cost the connection (found by review: every answer with
			// Trailer closed it, a new connection per request from
			// backends that announce Server-Timing).
			if got := conns.Load() == 1; got != tt.reused {
				t.Errorf("upstream connections for two requests: %d, want reused %v", conns.Load(), tt.reused)
			}
		})
	}
}

func TestDropTrailerFields(t *testing.T) {
	for _, tt := range []struct{ head, want string }{
		{"HTTP/1.1 200 OK\r\nA: 1\r\n\r\n", "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nTrailer: x\r\nA: 1\r\n\r\n", "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\ntrailer : x\r\nTRAILER:\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nTrailer: x,\r\n\ty\r\n z\r\nA: 1\r\n b\r\n\r\n", "HTTP/1.1 200 OK\r\nA: 1\r\n b\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nTrailers: x\r\nX-Trailer: y\r\n\r\n", "HTTP/1.1 200 OK\r\nTrailers: x\r\nX-Trailer: y\r\n\r\n"},
	} {
		if got := string(dropTrailerFields([]byte(tt.head))); got != tt.want {
			t.Errorf("dropTrailerFields(%q) = %q, want %q", tt.head, got, tt.want)
		}
	}
}
