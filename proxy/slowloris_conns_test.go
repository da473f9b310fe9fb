package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSlowlorisFreesClientConn: with limits.max_client_conns
// taken by a client that sent half a head and then went silent (without
// closing), another connection gets 503; once client_read has cut the
// slow one (408, then a lingering close that gives up after 1 s of
// quiet), a new connection is served. The slot is not held past about
// client_read + 1 s. (Passes.)
func TestSlowlorisFreesClientConn(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+
		"limits: { max_client_conns: 1 }\ntimeouts: { client_read: 400ms, idle: 10s }\n")
	slow, slowBr := dialProxy(t, px.addr)
	start := time.Now()
	if _, err := io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // being served
	try := func() int {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := try(); code != http.StatusServiceUnavailable {
		t.Fatalf("a connection over the limit got %d, want 503", code)
	}
	line, _ := slowBr.ReadString('\n')
	if took := time.Since(start); line != "HTTP/1.1 408 Request Timeout\r\n" || took < 350*time.Millisecond || took > 2*time.Second {
		t.Fatalf("slow client got %q after %v, want a 408 after about client_read (400ms)", line, took)
	}
	for {
		code := try()
		if code == http.StatusOK {
			break
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Fatalf("%v after the slow client's first byte a new connection still got %d, want 200 once client_read and the 1 s linger are over", took, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("served again %v after the slow client's first byte", time.Since(start).Round(time.Millisecond))
}
