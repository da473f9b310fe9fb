package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUpstreamReviewBareLFHeadOver4KiB: README says a backend head in
// bare LFs "is read as if they were CRLFs and passed on", and
// TestLongResponseHeads bounds a head by the 16 KiB upstream read buffer:
// a bare-LF head between 4 and 16 KiB (a long Set-Cookie or
// Content-Security-Policy) passes as the same head in CRLFs does, and so
// does a 103's. (Found by review: the rewritten head was read through
// bufio.NewReader's 4 KiB buffer, and fasthttp's small-buffer error gave
// an instant 502.)
func TestUpstreamReviewBareLFHeadOver4KiB(t *testing.T) {
	big := strings.Repeat("v", 5000)
	tests := []struct{ name, raw, want string }{
		{"CRLF head, for comparison", "HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\nContent-Length: 2\r\n\r\nok", "X-Big: " + big + "\r\n"},
		{"bare-LF final head", "HTTP/1.1 200 OK\nX-Big: " + big + "\nContent-Length: 2\n\nok", "X-Big: " + big + "\r\n"},
		{"bare-LF 103 before a CRLF answer", "HTTP/1.1 103 Early Hints\nLink: </" + big + ">; rel=preload\n\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, _ := serveKeptAlive(t, rawAnswer(tt.raw))
			px := startProxy(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\ntimeouts: {response: 2s}\n", ln.Addr()))
			got := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.Contains(got, "HTTP/1.1 200 OK\r\n") || !strings.Contains(got, tt.want) || !strings.HasSuffix(got, "\r\n\r\nok") {
				t.Fatalf("proxy answered %.160q, want the backend's 200 with its %d-byte field and body", got, len(big))
			}
		})
	}
}

// TestUpstreamReviewEarlyAnswerBeforeBodySent: a Go net/http backend
// that refuses a 6 MiB upload with 413 as soon as it has read 1 MiB
// (http.MaxBytesReader) answers, half-closes and stops reading, as RFC
// 9112 §9.5 lets a server do; a client sending straight to it gets the
// 413, and so does a client through sluice, as through nginx and
// HAProxy. (Found by review: the write of the rest of the body failed
// with a reset, do() discarded the connection without reading the answer
// already waiting on it, and the client got "502 upstream unavailable",
// scored as a backend failure.)
func TestUpstreamReviewEarlyAnswerBeforeBodySent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "413 too big", http.StatusRequestEntityTooLarge)
			return
		}
		_, _ = io.WriteString(w, "fine")
	}))
	t.Cleanup(srv.Close)
	body := strings.Repeat("b", 6<<20)

	direct, err := http.Post(srv.URL, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("direct POST: %v", err)
	}
	direct.Body.Close()
	if direct.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("direct POST = %d, want 413 (the backend's answer)", direct.StatusCode)
	}

	px := startProxy(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\ntimeouts: {response: 3s}\n", srv.Listener.Addr()))
	got := rawWire(t, px.addr, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if !strings.HasPrefix(got, "HTTP/1.1 413") {
		t.Fatalf("through sluice: %.120q, want the backend's 413", got)
	}
}
