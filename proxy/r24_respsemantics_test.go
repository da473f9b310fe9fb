package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Review 24, the response side: how sluice reads a backend's answer and
// what the client gets. The backends are raw sockets (hbBackend: /bad
// gets the scripted bytes, every other path "good:<path>").

// r24RespKeepBackend is hbBackend whose /bad answer is resp and
// whose connections stay open after it, so that the upstream connection
// may be reused; conns counts the connections accepted.
func r24RespKeepBackend(t *testing.T, resp string) (string, *atomic.Int64) {
	t.Helper()
	return hbBackend(t, func(c net.Conn, _ string) bool { return write(c, resp) })
}

// r24RespRead reads one response (a 1xx too) from br, as sent to a
// request with method.
func r24RespRead(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://example.com/bad", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	var body []byte
	if resp.StatusCode >= 200 {
		buf := make([]byte, 0, 64)
		for {
			var b [64]byte
			n, err := resp.Body.Read(b[:])
			buf = append(buf, b[:n]...)
			if err != nil {
				break
			}
		}
		body = buf
	}
	resp.Body.Close()
	return resp, string(body)
}

// TestRespLeadingEmptyLinesKeepChecks: a response head that
// starts with two empty lines (CRLF CRLF, or LF LF) before its status
// line. RFC 9112 §2.2 lets a recipient skip empty lines before a start
// line, and sluice reads the status line "as fasthttp's parser does
// (empty lines before it skipped)" (README, Forwarding); but the
// response must then get every check a head without them gets.
//
// Found by review 24: emptyLine (proxy/upclient.go) takes the first
// empty line for the head's end, so headEnd returns just the leading
// "\r\n\r\n"; statusCode finds no status line in it (!ok), and
// readResponse falls back to fasthttp's resp.ReadLimitBody, whose parser
// skips the empty lines and reads the answer with none of sluice's
// checks. So an HTTP/1.0 answer with chunked framing goes to the client
// with its chunk lines as the body, 000 as 200, the trailer section's
// fields as header fields, Content-Encoding cut to its last line, a
// Trailer field naming Set-Cookie a 502, a bare-LF head a 504, a 103
// dropped. One leading empty line is read right (the control case).
func TestRespLeadingEmptyLinesKeepChecks(t *testing.T) {
	const lead = "\r\n\r\n"
	tests := []struct {
		name  string
		resp  string
		check func(t *testing.T, br *bufio.Reader)
	}{
		{"control: one empty line, HTTP/1.0 chunked refused",
			"\r\nHTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 502 {
					t.Errorf("got %d %q, want 502 (errTENotHTTP11)", r.StatusCode, body)
				}
			}},
		{"HTTP/1.0 chunked refused",
			lead + "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 502 {
					t.Errorf("got %d %q, want 502 as without the empty lines (the chunk lines went on as the body)", r.StatusCode, body)
				}
			}},
		{"LF LF, HTTP/1.0 chunked refused",
			"\n\nHTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 502 {
					t.Errorf("got %d %q, want 502 as without the empty lines", r.StatusCode, body)
				}
			}},
		{"status 000 refused",
			lead + "HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 502 {
					t.Errorf("got %d %q, want 502 (a status outside 100-599)", r.StatusCode, body)
				}
			}},
		{"trailer fields not merged into the head",
			lead + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Smuggled: yes\r\n\r\n",
			func(t *testing.T, br *bufio.Reader) {
				r, body := r24RespRead(t, br, "GET")
				if r.StatusCode != 200 || body != "hello" || r.Header.Get("X-Smuggled") != "" {
					t.Errorf("got %d %q X-Smuggled %q, want 200 \"hello\" and no X-Smuggled (trailers are dropped)",
						r.StatusCode, body, r.Header.Get("X-Smuggled"))
				}
			}},
		{"Content-Encoding lines joined",
			lead + "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: br\r\nContent-Length: 5\r\n\r\nhello",
			func(t *testing.T, br *bufio.Reader) {
				r, _ := r24RespRead(t, br, "GET")
				if got := r.Header.Values("Content-Encoding"); len(got) != 1 || got[0] != "gzip, br" {
					t.Errorf("Content-Encoding %q, want [\"gzip, br\"]", got)
				}
			}},
		{"Trailer naming Set-Cookie passed on",
			lead + "HTTP/1.1 200 OK\r\nTrailer: Set-Cookie\r\nContent-Length: 5\r\n\r\nhello",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 200 || body != "hello" {
					t.Errorf("got %d %q, want 200 \"hello\" (TestResponseTrailerFieldNeverFails)", r.StatusCode, body)
				}
			}},
		{"bare-LF head read",
			lead + "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
			func(t *testing.T, br *bufio.Reader) {
				if r, body := r24RespRead(t, br, "GET"); r.StatusCode != 200 || body != "hello" {
					t.Errorf("got %d %q, want 200 \"hello\" (a bare-LF head is read at once, not waited on)", r.StatusCode, body)
				}
			}},
		{"103 passed on",
			lead + "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			func(t *testing.T, br *bufio.Reader) {
				r, _ := r24RespRead(t, br, "GET")
				if r.StatusCode != 103 || r.Header.Get("Link") == "" {
					t.Errorf("first answer %d Link %q, want 103 with the Link", r.StatusCode, r.Header.Get("Link"))
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool {
				write(c, tt.resp)
				return false
			})
			px := hbProxy(t, addr, "1s")
			c, br := dialProxy(t, px.addr)
			if _, err := fmt.Fprintf(c, "GET /bad HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			tt.check(t, br)
		})
	}
}

// TestRespBareLFInterimConnNotReused: README (Forwarding): "A
// backend response head whose lines end in a bare LF ... is read as if
// they were CRLFs ... the upstream connection is closed after it rather
// than reused", and "Every head is looked at, interim (1xx) answers
// included." A bare-LF final head closes the connection (the control
// subtest); a bare-LF interim head before a CRLF final one does not:
// readResponse's interim branch rewrites it (takeFixed) but never sets
// suspect, which only the final head's branch returns.
func TestRespBareLFInterimConnNotReused(t *testing.T) {
	tests := []struct{ name, resp string }{
		{"control: bare-LF final head", "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"},
		{"bare-LF 100 then CRLF 200", "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
		{"bare-LF 103 then CRLF 200", "HTTP/1.1 103 Early Hints\nLink: </a>\n\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, conns := r24RespKeepBackend(t, tt.resp)
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			if _, err := fmt.Fprintf(c, "GET /bad HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			r, body := r24RespRead(t, br, "GET")
			for r.StatusCode < 200 { // a 103 passed on
				r, body = r24RespRead(t, br, "GET")
			}
			if r.StatusCode != 200 || body != "hello" {
				t.Fatalf("got %d %q, want 200 \"hello\"", r.StatusCode, body)
			}
			hbCheckGood(t, c, br, 1)
			if n := conns.Load(); n != 2 {
				t.Errorf("backend connections %d after the answer and one more request, want 2 (the bare-LF head's connection not reused)", n)
			}
		})
	}
}

// TestRespFramingKept (passes; regression value): answers sluice
// reads right, each followed by two requests on the same client
// connection that get their own answers, and the upstream connection
// reused only where the framing was the usual one.
func TestRespFramingKept(t *testing.T) {
	tests := []struct {
		name, method, resp string
		status             int
		body               string
		header, value      string // a field the client must get ("" none)
		conns              int64  // backend connections after the three requests
	}{
		{"chunk extension and upper-case hex", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\nA;x=\"y;z\"\r\nhellohello\r\n0;last\r\n\r\n", 200, "hellohello", "", "", 1},
		{"HEAD keeps Content-Length, connection reused", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 200, "", "Content-Length", "1234", 1},
		{"304 keeps Content-Length, connection reused", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\nETag: \"e\"\r\n\r\n", 304, "", "Content-Length", "500", 1},
		{"204 drops Content-Length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, "", "Content-Length", "", 1},
		{"obs-fold made a space", "GET", "HTTP/1.1 200 OK\r\nX-A: one\r\n\ttwo\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "X-A", "one two", 1},
		{"no reason phrase", "GET", "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", "", 1},
		{"100 and 102 dropped", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", "", 1},
		{"HTTP/1.0 keep-alive reused", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "", "", 1},
		{"close-delimited HTTP/1.1 not reused", "GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nhello", 0, "", "", "", 2},
		{"both lengths not reused", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, "hello", "Content-Length", "5", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var addr string
			var conns *atomic.Int64
			if tt.status == 0 {
				// A close-delimited body ends at the close: the backend
				// closes after it, so the next request needs a new one.
				addr, conns = hbBackend(t, func(c net.Conn, _ string) bool { write(c, tt.resp); return false })
				tt.status, tt.body = 200, "hello"
			} else {
				addr, conns = r24RespKeepBackend(t, tt.resp)
			}
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, tt.method, "/bad")
			if a.err != nil || a.status != tt.status || a.body != tt.body {
				t.Fatalf("got %d %q err %v, want %d %q", a.status, a.body, a.err, tt.status, tt.body)
			}
			if tt.header != "" && a.header.Get(tt.header) != tt.value {
				t.Errorf("%s %q, want %q", tt.header, a.header.Get(tt.header), tt.value)
			}
			hbCheckGood(t, c, br, 2)
			deadline := time.Now().Add(2 * time.Second)
			for conns.Load() != tt.conns && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := conns.Load(); n != tt.conns {
				t.Errorf("backend connections %d, want %d", n, tt.conns)
			}
		})
	}
}
