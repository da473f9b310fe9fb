package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A backend that answers an upload before reading it (a 413), closes its
// sending side and reads nothing more, without closing the connection
// (RFC 9112 §9.5 lets it stop reading): the request's write meets a full
// socket and no error. The write looks for an answer while it waits for
// room (netconn.ErrAnsweredEarly), and the backend's 413 goes to the
// client, not a 504 after timeouts.response (found by review).
func TestEarlyAnswerThenHalfOpen(t *testing.T) {
	const body = 16 << 20
	for _, tt := range []struct {
		name, answer string
		want         int
	}{
		{"413 then FIN", "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope", 413},
		// An interim answer is no answer: the backend still wants the
		// body, and sluice keeps writing it (here to the response
		// timeout, since this backend reads nothing).
		{"100 only", "HTTP/1.1 100 Continue\r\n\r\n", 504},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln := answeringBackend(t, tt.answer, tt.want == 413)
			resp, b, took := postUpload(t, ln.Addr().String(), "2s", body)
			if resp.StatusCode != tt.want {
				t.Fatalf("answer %d %q after %v, want %d", resp.StatusCode, b, took, tt.want)
			}
			if tt.want == 413 && (took > time.Second || !strings.Contains(string(b), "nope")) {
				t.Errorf("413 %q after %v, want the backend's body within a second", b, took)
			}
		})
	}
}

// postUpload sends a POST with a body of n zero bytes through a proxy
// whose one backend is at backend (timeouts.response response), and
// returns the final answer (past any interim one), its body and how long
// it took to begin.
func postUpload(t *testing.T, backend, response string, n int) (*http.Response, []byte, time.Duration) {
	t.Helper()
	px := startProxy(t, fmt.Sprintf("timeouts: { response: %s }\nlimits: { max_body_bytes: %d }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", response, 2*n, backend))
	c, br := dialProxy(t, px.addr)
	go func() {
		_, _ = fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n)
		_, _ = c.Write(make([]byte, n))
	}()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer after %v: %v", time.Since(start), err)
		}
		if resp.StatusCode < 200 {
			continue // an interim answer passed on
		}
		took := time.Since(start)
		b, _ := io.ReadAll(resp.Body)
		return resp, b, took
	}
}

// answeringBackend starts a backend that reads a request's head, writes
// answer, half-closes if closeWrite, and reads nothing more: it closes
// only at the test's end.
func answeringBackend(t *testing.T, answer string, closeWrite bool) net.Listener {
	t.Helper()
	release := make(chan struct{})
	ln := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		if closeWrite {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		<-release
	})
	t.Cleanup(func() { close(release) }) // before serveRaw's wait
	return ln
}
