package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// turnsBackend answers /hint with a 103 and then "ok", and /n/N with N
// bytes (kept alive).
func turnsBackend(t *testing.T) net.Listener {
	ln, _ := serveKeptAlive(t, func(c net.Conn, req *http.Request) {
		if req.URL.Path == "/hint" {
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/n/"))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"+strings.Repeat("b", n))
	})
	return ln
}

// rawGet sends a GET for path on c and reads its answer raw, returning
// the length of its head and of its body.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) (head, body int) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	n := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		head += len(line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return head, n
}

// Found by review. What was wrong: an answer whose last write is exactly one full server buffer
// (4096 bytes: an answer of exactly 4096 bytes, or of exactly 8192 with
// a body of 4 KiB or more, whose first 4096 are held) is taken by the
// connection for the middle of an answer (netconn Conn.noteServerWrite
// sets midAnswer when len(p) == ServerWriteBufferSize; conn.go:1047), and
// the next read for the start of a turn that resumes mid-answer. So:
//   - the head watch is off for the next request: a head ending in a bare
//     LF waits for timeouts.client_read and gets 408, where README (Error
//     codes) promises 400 at once, as after any other answer;
//   - Turns is not advanced, and stays one behind ConnRequestNum for the
//     rest of the connection: hintable is false for good, and no later
//     103 Early Hints on that keep-alive connection reaches the client
//     (README: a backend's 103 is passed on);
//   - the answer does not wait for the next request (AwaitNextRequest),
//     its write ends with n == ServerWriteBufferSize.
//
// The length of a write does not tell an answer's end from a full buffer
// in its middle; the handler knows the answer's length (it already does
// for HoldNextWrite) and could tell the Conn where the answer ends.
func TestFullBufferAnswerEnd(t *testing.T) {
	ln := turnsBackend(t)
	px := startProxy(t, "timeouts: { client_read: 2s, idle: 10s }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ln.Addr().String()+" }\n")
	c0, br0 := dialProxy(t, px.addr)
	head, _ := rawGet(t, c0, br0, "/n/5000") // the head of a keep-alive answer with a 4-digit length
	for _, total := range []int{4096, 8192} {
		for _, delta := range []int{-1, 0} { // -1: an answer one byte shorter, as a control
			body := total - head + delta
			name := strconv.Itoa(total+delta) + "-byte answer"
			t.Run(name+", then a bare-LF head", func(t *testing.T) {
				c, br := dialProxy(t, px.addr)
				if h, n := rawGet(t, c, br, "/n/"+strconv.Itoa(body)); h+n != total+delta {
					t.Fatalf("answer of %d bytes, want %d", h+n, total+delta)
				}
				start := time.Now()
				if _, err := io.WriteString(c, "GET / HTTP/1.1\nHost: x\n\n"); err != nil {
					t.Fatal(err)
				}
				line, _ := br.ReadString('\n')
				if took := time.Since(start); !strings.HasPrefix(line, "HTTP/1.1 400") || took > time.Second {
					t.Errorf("bare-LF head after a %s: %q after %v, want 400 at once", name, strings.TrimSpace(line), took.Round(time.Millisecond))
				}
			})
			t.Run(name+", then 103s", func(t *testing.T) {
				c, br := dialProxy(t, px.addr)
				rawGet(t, c, br, "/n/"+strconv.Itoa(body))
				for i := range 2 {
					if _, err := io.WriteString(c, "GET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						t.Fatal(err)
					}
					if codes, _ := readAnswers(t, br, 1); len(codes) != 2 || codes[0] != http.StatusEarlyHints {
						t.Errorf("request %d after a %s: answers %v, want the backend's 103 and then 200", i+2, name, codes)
					}
				}
			})
		}
	}
}
