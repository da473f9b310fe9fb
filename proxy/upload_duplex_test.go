package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Before the fix (found by review): a backend that starts its answer (a 200 head, chunked) as soon as
// it has an upload's head and goes on reading the whole upload before it
// sends the body of that answer (a streaming ingest, an echo that counts)
// gets its upload cut, and the client an error. Expected: 200 "got
// 16777216" (what sluice answered before early answers were looked for:
// it wrote the request whole, then read the answer). Actual: a 502/504;
// the backend receives part of the upload. Cause: netconn's answered1
// takes any final status line that arrives while the request's write
// waits for room for an answer that ends the request (ErrAnsweredEarly),
// and upClient.do stops writing and reads it; the answer's body never
// comes, since the backend waits for the rest of the upload. RFC 9112
// §9.5 has a client stop sending only for an answer that says the server
// does not want the body (an error status) and closes; a 2xx answer
// wants the rest. Fix: count only error answers (status >= 300, or at
// least 4xx/5xx) or a close/reset as answered early, and keep writing
// after a 1xx/2xx.
func TestEarlySuccessAnswerKeepsUpload(t *testing.T) {
	const body = 16 << 20
	ln := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		n := -1
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
			return
		}
		got := 0
		buf := make([]byte, 64<<10)
		for got < n {
			k, err := br.Read(buf)
			got += k
			if err != nil {
				break
			}
			time.Sleep(time.Millisecond) // a slower reader than sluice's writer
		}
		msg := fmt.Sprintf("got %d", got)
		_, _ = fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(msg), msg)
	})
	resp, b, took := postUpload(t, ln.Addr().String(), "3s", body)
	if want := fmt.Sprintf("got %d", body); resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("answer %d %q after %v, want 200 %q (the backend answered early and read the whole upload)",
			resp.StatusCode, b, took, want)
	}
}
