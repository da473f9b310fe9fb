package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestConnectionNamedFieldsKeepFraming: a client that names in
// Connection the fields a request cannot do without (Host, and
// Content-Length, whose body sluice forwards) or those sluice sets
// (X-Forwarded-For, X-Request-Id) has its own copies removed (RFC 9110
// §7.6.1, README "Forwarding"), yet the backend gets a Host, the body
// framed by its true length, and sluice's X-Forwarded-For and a fresh
// X-Request-Id; a field named only there is gone, and an absolute-form
// target with no path goes upstream as "/" plus its query. (Coverage:
// behaves right; TestSmugglingVectors checks the request lines only.)
func TestConnectionNamedFieldsKeepFraming(t *testing.T) {
	// The raw backend closes after each answer: it says so, or the next
	// subtest's request could meet that close on the kept connection
	// (the POST then gets 502: README, Retries; seen under CI's load).
	b := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	px := startProxy(t, poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: b.ln}}}, nil))
	tests := []struct {
		name, raw string
		target    string
		host      string
		body      string
	}{
		{"every kind named", "POST /p HTTP/1.1\r\nHost: x\r\n" +
			"Connection: Host, Content-Length, X-Forwarded-For, X-Request-Id, X-Custom, close\r\n" +
			"X-Custom: 1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-Id: client-id\r\nContent-Length: 3\r\n\r\nabc", "/p", "x", "abc"},
		{"chunked, Content-Length named", "POST /p HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Transfer-Encoding, close\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "/p", "x", "abc"},
		{"absolute form, no path", "GET http://a.example?q=1 HTTP/1.1\r\nHost: b.example\r\nConnection: Host, close\r\n\r\n", "/?q=1", "a.example", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.mu.Lock()
			b.last = ""
			b.mu.Unlock()
			if code := rawStatus(t, px.addr, tt.raw); code != 200 {
				t.Fatalf("status %d, want 200", code)
			}
			got := b.got()
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(got)))
			if err != nil {
				t.Fatalf("backend got %q: %v", got, err)
			}
			body, _ := io.ReadAll(r.Body)
			if r.RequestURI != tt.target || r.Host != tt.host || string(body) != tt.body || r.ContentLength != int64(len(tt.body)) {
				t.Errorf("backend got target %q Host %q length %d body %q; want %q %q %d %q\n%q",
					r.RequestURI, r.Host, r.ContentLength, body, tt.target, tt.host, len(tt.body), tt.body, got)
			}
			if xff := r.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want [127.0.0.1] alone", xff)
			}
			if id := r.Header.Get("X-Request-Id"); len(id) != 32 {
				t.Errorf("X-Request-Id %q, want a fresh 32-digit id", id)
			}
			for _, name := range []string{"Connection", "X-Custom", "Transfer-Encoding"} {
				if v, ok := r.Header[name]; ok {
					t.Errorf("backend got %s: %q\n%q", name, v, got)
				}
			}
		})
	}
}
