package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// Found by review. What was wrong: a request head that ends in a bare LF is refused only when netconn's
// head watch sees it: at the start of a turn's first read, with its method
// in capitals. Anywhere else (pipelined behind another request or behind a
// body in the same read, or first on the connection with a method such as
// "get") it is served whenever a CRLFCRLF follows it in the buffered bytes:
// fasthttp's RequestHeader.tryRead only checks that the buffer holds a
// CRLFCRLF somewhere (blockTerminated), or parses what is buffered at once,
// and its parser then ends the head at the bare LF; the bytes after the
// bare-LF blank line are parsed as one more request, which reaches the
// backend too. README ("Forwarding") says such a head gets 400 and is
// refused because "a head that two parsers end in different places is what
// request smuggling is made of", and that the heads the watch misses
// (pipelined, method not in capitals) "still wait and get 408"; Error codes
// lists it as a 400, never forwarded. Expected: the requests before it
// answered, then 400 (or 408) for the bare-LF head and the close, nothing
// of it or after it upstream. Actual: /b and /c both reach the backend and
// are answered 200.
func TestBareLFHeadPipelinedIsRefused(t *testing.T) {
	const tail = "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	const getA = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name, first, bad string
		// want is the backend's request lines: the first request's
		// alone, none of the bare-LF head's nor of what follows it.
		want []string
	}{
		{"behind a GET, LF LF", getA, "GET /b HTTP/1.1\r\nHost: x\n\n", []string{"GET /a"}},
		{"behind a GET, CRLF LF", getA, "GET /b HTTP/1.1\r\nHost: x\r\n\n", []string{"GET /a"}},
		{"behind a GET, LF CRLF", getA, "GET /b HTTP/1.1\r\nHost: x\n\r\n", []string{"GET /a"}},
		{"behind a body", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", "GET /b HTTP/1.1\r\nHost: x\n\n", []string{"POST /a"}},
		{"behind a continued body", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc", "GET /b HTTP/1.1\r\nHost: x\n\n", []string{"POST /a"}},
		// Not pipelined at all: the watch skips a method not in capitals.
		{"lower-case method, first on the connection", "", "get /b HTTP/1.1\r\nHost: x\n\n", nil},
		// No fields, nothing to look at but the request line: an
		// HTTP/1.1 request without Host is refused anyway.
		{"no fields, HTTP/1.1", getA, "GET /b HTTP/1.1\n\n", []string{"GET /a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			be := startSmuggleBackend(t)
			// client_read 1 s: a fix that lets the head wait for 408 still
			// answers within the test's deadline.
			px := startProxy(t, "timeouts: { client_read: 1s }\n"+
				poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: be.ln}}}, nil))
			c, br := dialProxy(t, px.addr)
			// One write: the requests arrive in one read.
			if _, err := io.WriteString(c, tt.first+tt.bad+tail); err != nil {
				t.Fatal(err)
			}
			var codes []int // final answers
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Errorf("no more answers within 5 s after %v", codes)
					}
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 200 {
					continue // the 100 Continue
				}
				codes = append(codes, resp.StatusCode)
				if resp.Close {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
			raw, lines := be.snapshot()
			if !slices.Equal(lines, tt.want) {
				t.Errorf("%q then %q: backend got requests %q (answers %v); want %q: the bare-LF head and what follows it must not be forwarded\nbackend bytes: %q",
					tt.first, tt.bad, lines, codes, tt.want, raw)
			}
			n := len(tt.want) // answers of 200 before the refusal
			if len(codes) != n+1 || (codes[n] != 400 && codes[n] != 408) {
				t.Errorf("answers %v; want %d of 200, then 400 (or 408) for the bare-LF head, then the close", codes, n)
			}
		})
	}
}
