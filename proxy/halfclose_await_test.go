package proxy

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// TestHalfCloseAfterRequestAwait: a client that sends a keep-alive
// request and then half-closes its side (shutdown SHUT_WR) gets its
// answer and then the connection's close at once, as before the answer's
// write waited for the next request: the half-close comes before that
// write, and the wait must see it rather than hold the connection open
// until timeouts.idle (90 s).
func TestHalfCloseAfterRequestAwait(t *testing.T) {
	b := startBackend(t, "b1", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialProxy(t, px.addr) // 5 s deadline
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "hello from b1\n" {
		t.Fatalf("answer: %d %q, %v", resp.StatusCode, body, err)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the answer: read %d, %v; want the server's close (0, EOF)", n, err)
	}
}
