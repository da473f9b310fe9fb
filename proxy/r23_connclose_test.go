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

	"github.com/valyala/fasthttp"
)

// Found by review. What was wrong: an answer that closes the client connection (a request with
// "Connection: close", or an HTTP/1.0 one without keep-alive) is cut
// short by a reset when the client sent anything after the request that
// sluice did not read: here the extra CRLF after a POST body that RFC 2616
// §4.1 says some HTTP/1.0 clients send (RFC 9112 §2.2 asks servers to
// ignore it). fasthttp reads the body to its Content-Length and leaves the
// CRLF in the kernel; the connection's Close (netconn.Conn.Close, no
// lingering unless LingerOnClose was called, which only error answers do)
// then makes the kernel send a RST instead of a FIN and throw away the part
// of the answer not yet sent, so a client that is not reading as fast as
// sluice writes (any client over a real network, an 8 KiB receive buffer
// here) gets about 16 KiB of a 64 KiB body and "connection reset by peer".
// README (Error codes) describes exactly this reset and lingers over it for
// refusals; nginx 1.22 (lingering_close on) lingers when bytes are left
// after the request and delivers the whole answer to the same client
// (checked side by side on 127.0.0.1 with a 200 KiB answer, also with a request pipelined behind
// the body in the same write). RFC 9112 §9.6 describes this reset and asks
// servers to close in stages (half-close, then read until the client
// closes). Expected: the whole 64 KiB body, then EOF.
func TestCloseAnswerNotResetByExtraCRLF(t *testing.T) {
	const n = 64 << 10
	answer := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", n))
	addr := bodiesBackend(t, func(c net.Conn, _ *fasthttp.Request) bool {
		_, err := io.WriteString(c, answer)
		return err == nil
	})
	px := bodiesProxy(t, addr, "")
	body := strings.Repeat("b", 100<<10)
	for _, tc := range []struct{ name, head, after string }{
		{"HTTP/1.1 Connection: close, nothing after the body", "POST /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", ""},
		{"HTTP/1.1 Connection: close, CRLF after the body", "POST /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", "\r\n"},
		{"HTTP/1.0, CRLF after the body", "POST /u HTTP/1.0\r\n", "\r\n"},
		// Pipelined in the same write: it must go unanswered (RFC 9112
		// §9.6), and must not cost the answer before it its tail.
		{"HTTP/1.1 Connection: close, a request pipelined behind the body", "POST /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A client slower than sluice's writes, as any remote one is.
			_ = c.(*net.TCPConn).SetReadBuffer(8 << 10)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			req := fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s%s", tc.head, len(body), body, tc.after)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // sluice answers and closes meanwhile
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer's head: %v", err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(got) != n || err != nil {
				t.Fatalf("status %d, %d of %d body bytes, err %v: the answer was cut by a reset", resp.StatusCode, len(got), n, err)
			}
			if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
				t.Fatalf("after the closing answer: %q, err %v; want nothing, then EOF", rest, err)
			}
		})
	}
}
