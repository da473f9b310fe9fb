package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// exchangeRaw sends raw on a new connection to addr and reads for at most
// wait: what came, and whether the proxy closed the connection.
func exchangeRaw(t *testing.T, addr, raw string, wait time.Duration) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return string(out), err == io.EOF
		}
	}
}

// TestResponseFramingToClients: what a client gets for backend answers whose
// framing must change on the way (passing; found correct by this review).
// An HTTP/1.0 client never gets chunks (RFC 9112 §7.1: not to 1.0), a
// close-delimited answer reaches a keep-alive client with a length and the
// connection open, same-name Set-Cookie lines stay apart and in order (RFC
// 9110 §5.3), and a HEAD answer keeps its length beyond
// max_response_bytes, since no body comes.
func TestResponseFramingToClients(t *testing.T) {
	tests := []struct {
		name       string
		request    string
		backend    string
		want       []string // in this order in the answer
		suffix     string   // how the answer ends
		notWant    []string
		wantClosed bool
	}{
		{
			name:       "chunked to an HTTP/1.0 client",
			request:    "GET / HTTP/1.0\r\n\r\n",
			backend:    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			want:       []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 11\r\n"},
			suffix:     "\r\n\r\nhello world",
			notWant:    []string{"Transfer-Encoding", "chunked"},
			wantClosed: true,
		},
		{
			name:    "close-delimited to an HTTP/1.0 keep-alive client, twice",
			request: "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			backend: "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil-close",
			want: []string{"Content-Length: 11\r\n", "Connection: keep-alive\r\n\r\nuntil-close",
				"HTTP/1.1 200 OK\r\n", "Content-Length: 11\r\n"},
			suffix:     "Connection: keep-alive\r\n\r\nuntil-close",
			wantClosed: false,
		},
		{
			name:       "same-name Set-Cookie lines",
			request:    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			backend:    "HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-B: 1\r\nSet-Cookie: a=2; Path=/x\r\nSet-Cookie: a=3; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			want:       []string{"Set-Cookie: a=1; Path=/\r\n", "Set-Cookie: a=2; Path=/x\r\n", "Set-Cookie: a=3; Path=/\r\n"},
			suffix:     "\r\n\r\nok",
			notWant:    []string{"Connection"},
			wantClosed: false,
		},
		{
			name:       "HEAD answer announcing 10 GiB",
			request:    "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
			backend:    "HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n",
			want:       []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 10737418240\r\n"},
			suffix:     "\r\n\r\n",
			wantClosed: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, tt.backend)
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			out, closed := exchangeRaw(t, px.addr, tt.request, 700*time.Millisecond)
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer %q lacks %q (in order)", out, w)
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasSuffix(out, tt.suffix) {
				t.Errorf("answer %q does not end in %q", out, tt.suffix)
			}
			for _, nw := range tt.notWant {
				if strings.Contains(out, nw) {
					t.Errorf("answer %q has %q", out, nw)
				}
			}
			if closed != tt.wantClosed {
				t.Errorf("connection closed = %v, want %v", closed, tt.wantClosed)
			}
		})
	}
}
