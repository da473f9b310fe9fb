package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestMaxClientConns: with limits.max_client_conns connections open, one
// more is answered 503 and closed, and never reaches a backend; once one
// of them closes, a new connection is served again.
func TestMaxClientConns(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_client_conns: 2 }\n")
	// exchange sends one request on c and returns the answer's status.
	exchange := func(c net.Conn, br *bufio.Reader) (int, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// A refused connection may be closed before the request is
		// written; its 503 is read all the same.
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	var held []net.Conn
	for range 2 {
		c, br := dial()
		if code, err := exchange(c, br); code != 200 || err != nil {
			t.Fatalf("connection within the limit: %d, %v; want 200", code, err)
		}
		held = append(held, c)
	}
	hits := b.hits.Load()
	c, br := dial()
	if code, _ := exchange(c, br); code != http.StatusServiceUnavailable {
		t.Fatalf("connection over the limit: status %d, want 503", code)
	}
	if got := b.hits.Load(); got != hits {
		t.Errorf("backend hits %d -> %d: the refused connection's request reached it", hits, got)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, br := dial()
		code, err := exchange(c, br)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a connection closed, a new one got %d, %v; want 200", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
