package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// rawBackend answers every request with one fixed raw response and records
// the raw bytes of the last request it got.
type rawBackend struct {
	ln   net.Listener
	resp string
	mu   sync.Mutex
	last string
}

func startRawBackend(t *testing.T, resp string) *rawBackend {
	t.Helper()
	b := &rawBackend{resp: resp}
	b.ln = serveRaw(t, func(c net.Conn) {
		var rec bytes.Buffer
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(io.TeeReader(c, &rec))); err != nil {
			return
		}
		b.mu.Lock()
		b.last = rec.String()
		b.mu.Unlock()
		_, _ = io.WriteString(c, b.resp)
	})
	return b
}

// serveRaw listens on a random loopback port and runs handle on each
// connection in a goroutine of its own, under a 5 s deadline, closing the
// connection after; the listener is closed and every handler waited for
// when the test ends.
func serveRaw(tb testing.TB, handle func(c net.Conn)) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

func (b *rawBackend) got() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// rawWire sends raw on a new connection and reads until the proxy
// closes it.
func rawWire(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

// TestScannedHeadersEndToEnd: what the one-scan header rewrite must still
// remove, in the corners the scan cannot read directly: obs-fold
// continuation lines and trailer sections (found by review).
func TestScannedHeadersEndToEnd(t *testing.T) {
	const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	tests := []struct {
		name    string
		request string
		resp    string
		// notUpstream / notClient must not appear (lower case) in what the
		// upstream received / what the client got.
		notUpstream []string
		notClient   []string
	}{
		{
			name: "folded Connection value names a header",
			request: "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive,\r\n X-Secret\r\n" +
				"X-Secret: client-value\r\nConnection: close\r\n\r\n",
			resp:        okResp,
			notUpstream: []string{"\nx-secret:"},
		},
		{
			name: "declared request trailer with a hop-by-hop name",
			request: "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: Upgrade\r\n" +
				"Connection: close\r\n\r\n1\r\na\r\n0\r\nUpgrade: h2c\r\n\r\n",
			resp:        okResp,
			notUpstream: []string{"upgrade", "\ntrailer:", "transfer-encoding"},
		},
		{
			name: "undeclared request trailer",
			request: "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				"1\r\na\r\n0\r\nUpgrade: h2c\r\nX-Request-Id: client-id\r\n\r\n",
			resp:        okResp,
			notUpstream: []string{"upgrade", "\ntrailer:", "transfer-encoding"},
		},
		{
			name: "request trailer field is dropped, not merged into the headers",
			request: "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				"5\r\nhello\r\n0\r\nX-Api-Key: hidden\r\n\r\n",
			resp:        okResp,
			notUpstream: []string{"x-api-key", "hidden"},
		},
		{
			name:    "response trailer field is dropped, not merged into the headers",
			request: "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
			resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				"2\r\nok\r\n0\r\nX-T: tv\r\n\r\n",
			notClient: []string{"x-t:", "tv"},
		},
		{
			name:    "response trailer with a hop-by-hop name",
			request: "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
			resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nConnection: close\r\n\r\n" +
				"2\r\nok\r\n0\r\nX-T: 1\r\nUpgrade: h2c\r\n\r\n",
			notClient: []string{"upgrade"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, tt.resp)
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			out := rawWire(t, px.addr, tt.request)
			if !strings.HasPrefix(out, "HTTP/1.1 200") {
				t.Fatalf("proxy answered %q", out)
			}
			up := strings.ToLower(b.got())
			for _, s := range tt.notUpstream {
				if strings.Contains(up, s) {
					t.Errorf("upstream received %q:\n%s", s, up)
				}
			}
			for _, s := range tt.notClient {
				if strings.Contains(strings.ToLower(out), s) {
					t.Errorf("client received %q:\n%s", s, out)
				}
			}
		})
	}
}

// TestBadResponsesBecome502: a response sluice cannot pass on safely gets
// the client a 502: a 101 to a request whose Upgrade was removed, and a
// field name that is not a token.
func TestBadResponsesBecome502(t *testing.T) {
	for _, tt := range []struct{ name, resp string }{
		{"unasked 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{"space in a field name", "HTTP/1.1 200 OK\r\nX F: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, tt.resp)
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 502") {
				t.Fatalf("proxy answered %q, want a 502", out)
			}
		})
	}
}

// TestTrailerRepeatingAHeaderRefused: a request whose trailer repeats a
// header's name cannot have its trailer dropped without guessing which
// value is which; it is refused and never reaches the backend.
func TestTrailerRepeatingAHeaderRefused(t *testing.T) {
	b := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
	out := rawWire(t, px.addr, "POST / HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"1\r\na\r\n0\r\nX-A: 2\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Fatalf("proxy answered %q, want a 400", out)
	}
	if got := b.got(); got != "" {
		t.Errorf("backend received %q, want nothing", got)
	}
}
