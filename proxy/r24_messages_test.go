package proxy

// Session 24 review, area "messages": HTTP/1.0 clients and request bodies
// end to end, with raw sockets on loopback: what the backend received
// (exact bytes) and what the client got.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// r24MsgBackend records every byte its connections receive and
// answers each request read whole (Go's parser) with answer's raw bytes
// (nil answer: a 2-byte "ok" with a Content-Length); an empty answer
// closes the connection, and so does one after an answer that starts
// with "!" (which is not sent).
type r24MsgBackend struct {
	ln     net.Listener
	mu     sync.Mutex
	raw    bytes.Buffer
	reqs   []r24MsgReq
	conns  atomic.Int64
	answer func(r *http.Request, body []byte) string
}

type r24MsgReq struct {
	method, target, proto string
	header                http.Header
	body                  []byte
	bodyErr               error
}

type r24MsgRec struct{ b *r24MsgBackend }

func (w r24MsgRec) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.raw.Write(p)
}

func r24MsgStartBackend(t *testing.T, answer func(r *http.Request, body []byte) string) *r24MsgBackend {
	t.Helper()
	b := &r24MsgBackend{answer: answer}
	b.ln = serveRaw(t, func(c net.Conn) {
		b.conns.Add(1)
		br := bufio.NewReader(io.TeeReader(c, r24MsgRec{b}))
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, berr := io.ReadAll(r.Body)
			b.mu.Lock()
			b.reqs = append(b.reqs, r24MsgReq{r.Method, r.RequestURI, r.Proto, r.Header, body, berr})
			b.mu.Unlock()
			if berr != nil {
				return
			}
			out := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if b.answer != nil {
				out = b.answer(r, body)
			}
			if out == "" {
				return
			}
			// A leading "!" closes the connection after the answer.
			closeAfter := out[0] == '!'
			if closeAfter {
				out = out[1:]
			}
			if _, err := io.WriteString(c, out); err != nil || closeAfter {
				return
			}
		}
	})
	return b
}

func (b *r24MsgBackend) addr() string { return b.ln.Addr().String() }

func (b *r24MsgBackend) got() (string, []r24MsgReq) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.raw.String(), append([]r24MsgReq(nil), b.reqs...)
}

func r24MsgProxy(t *testing.T, backend, extra string) *testProxy {
	t.Helper()
	return startProxy(t, extra+"routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+backend+" }\n")
}

// r24MsgRead reads one answer to a request of method from br, its
// body whole; the error is the head's or the body's.
func r24MsgRead(br *bufio.Reader, method string) (*http.Response, []byte, error) {
	req, _ := http.NewRequest(method, "http://x/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

// r24MsgClosed reports whether the proxy closed c: a read that ends
// in EOF (or a reset) rather than in the 5 s guard's timeout.
func r24MsgClosed(c net.Conn, br *bufio.Reader) (bool, string) {
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	extra, err := io.ReadAll(br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, string(extra)
	}
	return true, string(extra)
}

// r24MsgHeads splits raw upstream bytes into the heads of the
// requests in them, each from its request line to its blank line
// (bodies skipped by their Content-Length).
func r24MsgHeads(raw string) []string {
	var heads []string
	for {
		i := strings.Index(raw, "\r\n\r\n")
		if i < 0 {
			return heads
		}
		heads = append(heads, raw[:i+4])
		raw = raw[i+4:]
		// skip any body by its Content-Length
		h := heads[len(heads)-1]
		if j := strings.Index(strings.ToLower(h), "\r\ncontent-length: "); j >= 0 {
			var n int
			fmt.Sscanf(h[j+len("\r\ncontent-length: "):], "%d", &n)
			if n <= len(raw) {
				raw = raw[n:]
			}
		}
	}
}

// r24MsgSend dials the proxy and writes raw.
func r24MsgSend(t *testing.T, addr, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := dialProxy(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c, br
}

// TestMsgHTTP10KeepAlive: an HTTP/1.0 request keeps its connection
// only with the keep-alive option (RFC 9112 §9.3), and the answer says
// which: "Connection: keep-alive" when kept, "Connection: close" when not;
// the request goes upstream as HTTP/1.1 without the client's Connection.
func TestMsgHTTP10KeepAlive(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "")
	for _, tc := range []struct {
		name, conn string
		keep       bool
	}{
		{"no Connection", "", false},
		{"keep-alive", "Connection: keep-alive\r\n", true},
		{"Keep-Alive capitals", "Connection: Keep-Alive\r\n", true},
		{"keep-alive among others", "Connection: foo, keep-alive\r\nFoo: 1\r\n", true},
		{"keep-alive and close", "Connection: keep-alive, close\r\n", false},
		{"close", "Connection: close\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := "GET /k HTTP/1.0\r\nHost: example.com\r\n" + tc.conn + "\r\n"
			c, br := r24MsgSend(t, px.addr, req)
			for i := range 2 {
				resp, body, err := r24MsgRead(br, "GET")
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Fatalf("answer %d: %d %q, want 200 ok", i+1, resp.StatusCode, body)
				}
				if got := resp.Header.Get("Connection"); tc.keep && !strings.EqualFold(got, "keep-alive") {
					t.Errorf("answer %d: Connection %q, want keep-alive for a kept HTTP/1.0 connection", i+1, got)
				}
				if resp.Close == tc.keep {
					t.Errorf("answer %d: says close=%v, want %v", i+1, resp.Close, !tc.keep)
				}
				if !tc.keep {
					if closed, extra := r24MsgClosed(c, br); !closed || extra != "" {
						t.Errorf("connection closed=%v extra=%q after an HTTP/1.0 answer without keep-alive", closed, extra)
					}
					break
				}
				if i == 0 {
					io.WriteString(c, req)
				}
			}
			raw, _ := b.got()
			for _, h := range r24MsgHeads(raw) {
				if !strings.HasPrefix(h, "GET /k HTTP/1.1\r\n") || strings.Contains(strings.ToLower(h), "connection") || strings.Contains(h, "Foo:") {
					t.Errorf("upstream head %q: want HTTP/1.1, no Connection nor fields it names", h)
				}
			}
		})
	}
}

// TestMsgHTTP10Reframed: answers to an HTTP/1.0 client (kept alive
// or not) are framed by Content-Length whatever the backend sent: chunked,
// close-delimited, with trailers; a HEAD's answer has no body; a long
// answer (spliced) too.
func TestMsgHTTP10Reframed(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 128<<10) // 2 MiB
	answers := map[string]string{
		"/chunked":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
		"/close":     "!HTTP/1.1 200 OK\r\n\r\nhello world",
		"/http10":    "!HTTP/1.0 200 OK\r\n\r\nhello world",
		"/bigchunk":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big),
		"/big":       fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
		"/headchunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	}
	b := r24MsgStartBackend(t, func(r *http.Request, _ []byte) string {
		a := answers[r.URL.Path]
		if r.Method == "HEAD" {
			if r.URL.Path == "/headchunk" {
				return a
			}
			return "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"
		}
		return a
	})
	px := r24MsgProxy(t, b.addr(), "")
	for _, tc := range []struct {
		name, method, path, want string
	}{
		{"chunked", "GET", "/chunked", "hello world"},
		{"close-delimited", "GET", "/close", "hello world"},
		{"HTTP/1.0 backend", "GET", "/http10", "hello world"},
		{"long chunked", "GET", "/bigchunk", big},
		{"long", "GET", "/big", big},
		{"HEAD", "HEAD", "/big", ""},
		{"HEAD chunked", "HEAD", "/headchunk", ""},
	} {
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keep=%v", tc.name, keep), func(t *testing.T) {
				conn := ""
				if keep {
					conn = "Connection: keep-alive\r\n"
				}
				req := tc.method + " " + tc.path + " HTTP/1.0\r\nHost: example.com\r\n" + conn + "\r\n"
				c, br := r24MsgSend(t, px.addr, req)
				n := 1
				if keep {
					n = 2
					io.WriteString(c, req) // pipelined: the second answer must follow the first
				}
				for i := range n {
					resp, body, err := r24MsgRead(br, tc.method)
					if err != nil {
						t.Fatalf("answer %d: %v", i+1, err)
					}
					if len(resp.TransferEncoding) > 0 {
						t.Errorf("answer %d: Transfer-Encoding %v to an HTTP/1.0 client", i+1, resp.TransferEncoding)
					}
					if tc.method == "GET" && resp.ContentLength != int64(len(tc.want)) {
						t.Errorf("answer %d: Content-Length %d, want %d", i+1, resp.ContentLength, len(tc.want))
					}
					if resp.StatusCode != 200 || string(body) != tc.want {
						t.Errorf("answer %d: %d, body %d bytes, want 200 with %d", i+1, resp.StatusCode, len(body), len(tc.want))
					}
					if resp.Close == keep {
						t.Errorf("answer %d: close=%v, want %v", i+1, resp.Close, !keep)
					}
				}
				closed, extra := r24MsgClosed(c, br)
				if closed == keep || extra != "" {
					t.Errorf("after the answers: closed=%v extra=%q, want closed=%v and nothing more", closed, extra, !keep)
				}
			})
		}
	}
}

// TestMsgHostAndTargets: HTTP/1.1 without Host is refused (RFC
// 9112 §3.2), never forwarded; HTTP/1.0 without Host goes with the
// backend's address; an absolute-form target on HTTP/1.0 goes as
// origin-form with its host as Host; OPTIONS * goes as it came.
func TestMsgHostAndTargets(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "")
	for _, tc := range []struct {
		name, raw, method string
		status            int
		upstream          string // request line and Host sent upstream; "" none
	}{
		{"1.1 no Host", "GET /h HTTP/1.1\r\n\r\n", "GET", 400, ""},
		{"1.1 no Host absolute-form", "GET http://example.com/h HTTP/1.1\r\n\r\n", "GET", 400, ""},
		{"1.1 empty Host", "GET /h HTTP/1.1\r\nHost:\r\n\r\n", "GET", 400, ""}, // refused on purpose (r19), as nginx does
		{"1.0 no Host", "GET /h HTTP/1.0\r\n\r\n", "GET", 200, "GET /h HTTP/1.1\r\nHost: " + b.addr() + "\r\n"},
		{"1.0 absolute-form", "GET http://example.com/h?q HTTP/1.0\r\n\r\n", "GET", 200, "GET /h?q HTTP/1.1\r\nHost: example.com\r\n"},
		{"1.0 absolute-form beside Host", "GET http://example.com:81/h?q HTTP/1.0\r\nHost: other.org\r\n\r\n", "GET", 200, "GET /h?q HTTP/1.1\r\nHost: example.com:81\r\n"},
		{"1.0 absolute-form no path", "GET http://example.com HTTP/1.0\r\n\r\n", "GET", 200, "GET / HTTP/1.1\r\nHost: example.com\r\n"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", "OPTIONS", 200, "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n"},
		{"OPTIONS * 1.0", "OPTIONS * HTTP/1.0\r\n\r\n", "OPTIONS", 200, "OPTIONS * HTTP/1.1\r\nHost: " + b.addr() + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := b.got()
			c, br := r24MsgSend(t, px.addr, tc.raw)
			resp, _, err := r24MsgRead(br, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			c.Close()
			after, _ := b.got()
			got := after[len(before):]
			switch {
			case tc.upstream == "" && got != "":
				t.Errorf("backend got %q, want nothing", got)
			case tc.upstream != "" && !strings.HasPrefix(got, tc.upstream):
				t.Errorf("backend got %q, want it to start %q", got, tc.upstream)
			}
		})
	}
}

// r24MsgWant is the exact head sluice sends upstream for a request
// of method and target to Host example.com from 127.0.0.1 with a body of
// n bytes (n < 0: no Content-Length), without its X-Request-Id line,
// which is random: r24MsgNoID takes it out of what was received.
func r24MsgWant(method, target string, n int) string {
	cl := ""
	if n >= 0 {
		cl = fmt.Sprintf("Content-Length: %d\r\n", n)
	}
	return method + " " + target + " HTTP/1.1\r\nHost: example.com\r\n" + cl +
		"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n\r\n"
}

func r24MsgNoID(raw string) string {
	var out strings.Builder
	for {
		i := strings.Index(raw, "X-Request-Id: ")
		if i < 0 {
			out.WriteString(raw)
			return out.String()
		}
		out.WriteString(raw[:i])
		j := strings.Index(raw[i:], "\r\n")
		raw = raw[i+j+2:]
	}
}

// TestMsgChunkedUpload: a chunked upload (extensions, trailer,
// upper-case hex, leading zeros) reaches the backend as exactly its data
// with a Content-Length, no Transfer-Encoding, no trailer field, whether
// it comes in one write or one byte per write; the connection stays
// usable.
func TestMsgChunkedUpload(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "")
	const head = "POST /u HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
	for _, tc := range []struct{ name, raw, want string }{
		{"extensions", head + "\r\n5;a=b;c=\"d e\"\r\nhello\r\n6;x\r\n world\r\n0;z=1\r\n\r\n", "hello world"},
		{"trailer", head + "\r\n5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n", "hello"},
		{"announced trailer", head + "Trailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "hello"},
		{"hex", head + "\r\nA\r\n0123456789\r\n00010\r\n0123456789abcdef\r\n000\r\n\r\n", "01234567890123456789abcdef"},
		{"empty", head + "\r\n0\r\n\r\n", ""},
	} {
		for _, tiny := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tiny=%v", tc.name, tiny), func(t *testing.T) {
				before, _ := b.got()
				c, br := dialProxy(t, px.addr)
				if !tiny {
					io.WriteString(c, tc.raw)
				} else {
					for i := range len(tc.raw) {
						if _, err := c.Write([]byte{tc.raw[i]}); err != nil {
							t.Fatal(err)
						}
						time.Sleep(time.Millisecond)
					}
				}
				resp, body, err := r24MsgRead(br, "POST")
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || string(body) != "ok" {
					t.Fatalf("answer %d %q, want 200 ok", resp.StatusCode, body)
				}
				// The connection is still in step: a second request.
				io.WriteString(c, "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n")
				if resp, _, err := r24MsgRead(br, "GET"); err != nil || resp.StatusCode != 200 {
					t.Fatalf("request after the upload: %v %v", resp, err)
				}
				after, _ := b.got()
				want := r24MsgWant("POST", "/u", len(tc.want)) + tc.want + r24MsgWant("GET", "/next", -1)
				if got := r24MsgNoID(after[len(before):]); got != want {
					t.Errorf("backend got\n%q\nwant\n%q", got, want)
				}
			})
		}
	}
}

// TestMsgTruncatedUpload: an upload the client cuts short (its
// Content-Length or chunked framing not complete when it half-closes or
// closes) never reaches the backend, neither whole nor truncated; a
// client that only half-closed gets an error answer or none.
func TestMsgTruncatedUpload(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "")
	const h = "POST /cut HTTP/1.1\r\nHost: example.com\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"Content-Length half", h + "Content-Length: 100\r\n\r\n" + strings.Repeat("x", 50)},
		{"Content-Length none", h + "Content-Length: 100\r\n\r\n"},
		{"Content-Length one short", h + "Content-Length: 100\r\n\r\n" + strings.Repeat("x", 99)},
		{"chunk data cut", h + "Transfer-Encoding: chunked\r\n\r\n10\r\nhello"},
		{"no last chunk", h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{"last chunk, no end", h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"},
		{"trailer cut", h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n"},
		{"Expect then cut", h + "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n" + strings.Repeat("x", 50)},
		{"HTTP/1.0 cut", "POST /cut HTTP/1.0\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 50)},
	} {
		for _, half := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/halfclose=%v", tc.name, half), func(t *testing.T) {
				before, _ := b.got()
				c, br := r24MsgSend(t, px.addr, tc.raw)
				if half {
					c.(*net.TCPConn).CloseWrite()
					out, _ := io.ReadAll(br)
					answers := string(out)
					// A 100 Continue may come first; then an error answer
					// or none (a chunked body cut at a chunk boundary
					// reads as a clean close to fasthttp; nginx sends
					// nothing to a client that closed early either).
					answers = strings.TrimPrefix(answers, "HTTP/1.1 100 Continue\r\n\r\n")
					if answers != "" && !strings.HasPrefix(answers, "HTTP/1.1 4") {
						t.Errorf("client got %q, want a 4xx or nothing", out)
					}
				} else {
					c.Close()
				}
				// Give the proxy time to act on the cut before looking:
				// a request sent upstream now would show in a moment.
				// A second request on a new connection goes after it.
				c2, br2 := r24MsgSend(t, px.addr, "GET /after HTTP/1.1\r\nHost: example.com\r\n\r\n")
				if resp, _, err := r24MsgRead(br2, "GET"); err != nil || resp.StatusCode != 200 {
					t.Fatalf("request after: %v %v", resp, err)
				}
				c2.Close()
				after, _ := b.got()
				if got := r24MsgNoID(after[len(before):]); got != r24MsgWant("GET", "/after", -1) {
					t.Errorf("backend got %q, want only the later GET", got)
				}
			})
		}
	}
}

// TestMsgExpectContinue: Expect: 100-continue on an HTTP/1.1
// upload: 100 and then the answer, the body sent after the 100 or with
// the head; the backend gets the body at once and no Expect; an announced
// body over limits.max_body_bytes gets 413 at once with no 100, a chunked
// one 413 once over it, and neither reaches the backend; a client that
// never sends the body gets 408; HTTP/1.0 gets no 100 (RFC 9110 §10.1.1).
func TestMsgExpectContinue(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "limits: { max_body_bytes: 64 }\ntimeouts: { client_read: 1s }\n")
	const h = "POST /e HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
	body := strings.Repeat("b", 64)
	for _, tc := range []struct {
		name, head, body string
		wait             bool   // wait for the 100 before sending body
		first            int    // first status the client gets
		final            int    // final status
		upstream         string // body the backend gets; "-" none
	}{
		{"wait for 100", h + "Content-Length: 64\r\n\r\n", body, true, 100, 200, body},
		{"body with head", h + "Content-Length: 64\r\n\r\n", body, false, 100, 200, body},
		{"chunked wait", h + "Transfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", true, 100, 200, "hello"},
		{"over the limit", h + "Content-Length: 65\r\n\r\n", "", false, 413, 413, "-"},
		{"over the limit, body follows", h + "Content-Length: 65\r\n\r\n", body + "b", false, 413, 413, "-"},
		{"chunked over the limit", h + "Transfer-Encoding: chunked\r\n\r\n", "41\r\n" + body + "b\r\n0\r\n\r\n", true, 100, 413, "-"},
		{"body never sent", h + "Content-Length: 64\r\n\r\n", "", false, 100, 408, "-"},
		{"zero length", h + "Content-Length: 0\r\n\r\n", "", false, 0, 200, ""},
		{"HTTP/1.0", "POST /e HTTP/1.0\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "hello", false, 200, 200, "hello"},
		{"not 100-continue", "POST /e HTTP/1.1\r\nHost: example.com\r\nExpect: something\r\nContent-Length: 5\r\n\r\n", "hello", false, 200, 200, "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := b.got()
			c, br := r24MsgSend(t, px.addr, tc.head)
			if !tc.wait && tc.body != "" {
				io.WriteString(c, tc.body)
			}
			resp, rb, err := r24MsgRead(br, "POST")
			if err != nil {
				t.Fatal(err)
			}
			if tc.first != 0 && resp.StatusCode != tc.first {
				t.Fatalf("first answer %d %q, want %d", resp.StatusCode, rb, tc.first)
			}
			if resp.StatusCode == 100 {
				if tc.wait {
					io.WriteString(c, tc.body)
				}
				if resp, rb, err = r24MsgRead(br, "POST"); err != nil {
					t.Fatal(err)
				}
			}
			if resp.StatusCode != tc.final {
				t.Errorf("final answer %d %q, want %d", resp.StatusCode, rb, tc.final)
			}
			if tc.final != 200 {
				if closed, extra := r24MsgClosed(c, br); !closed || extra != "" {
					t.Errorf("after %d: closed=%v extra=%q, want closed", tc.final, closed, extra)
				}
			}
			c.Close()
			after, reqs := b.got()
			got := after[len(before):]
			switch {
			case tc.upstream == "-" && got != "":
				t.Errorf("backend got %q, want nothing", got)
			case tc.upstream != "-":
				last := reqs[len(reqs)-1]
				if string(last.body) != tc.upstream || last.header.Get("Expect") != "" || len(last.header["Content-Length"]) != 1 {
					t.Errorf("backend got %q, want body %q with a Content-Length and no Expect", got, tc.upstream)
				}
			}
		})
	}
}

// TestMsgBodyOverLimit: a body over limits.max_body_bytes gets
// 413 and the connection closes; nothing reaches the backend, and
// what the client sent after never becomes a request.
func TestMsgBodyOverLimit(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "limits: { max_body_bytes: 64 }\n")
	next := "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"Content-Length", "POST /o HTTP/1.1\r\nHost: example.com\r\nContent-Length: 65\r\n\r\n" + strings.Repeat("x", 65) + next},
		{"Content-Length, body like a request", "POST /o HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n" + next + strings.Repeat("x", 100-len(next))},
		{"chunked one chunk", "POST /o HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n" + strings.Repeat("x", 65) + "\r\n0\r\n\r\n" + next},
		{"chunked many chunks", "POST /o HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("8\r\nxxxxxxxx\r\n", 9) + "0\r\n\r\n" + next},
		{"GET body", "GET /o HTTP/1.1\r\nHost: example.com\r\nContent-Length: 65\r\n\r\n" + strings.Repeat("x", 65) + next},
		{"HTTP/1.0 keep-alive", "POST /o HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 65\r\n\r\n" + strings.Repeat("x", 65) + next},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := b.got()
			c, br := r24MsgSend(t, px.addr, tc.raw)
			resp, body, err := r24MsgRead(br, "POST")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 413 {
				t.Errorf("answer %d %q, want 413", resp.StatusCode, body)
			}
			if closed, extra := r24MsgClosed(c, br); !closed || extra != "" {
				t.Errorf("after the 413: closed=%v extra=%q, want closed with nothing more", closed, extra)
			}
			after, _ := b.got()
			if got := after[len(before):]; got != "" {
				t.Errorf("backend got %q, want nothing", got)
			}
		})
	}
}

// TestMsgPipelinedAfterChunked: requests pipelined behind a
// chunked upload (in the same write as its last chunk, its trailer, or
// split across writes) are each forwarded once, in order, with their own
// bodies, and answered in order.
func TestMsgPipelinedAfterChunked(t *testing.T) {
	b := r24MsgStartBackend(t, func(r *http.Request, body []byte) string {
		s := r.URL.Path + ":" + string(body)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(s), s)
	})
	px := r24MsgProxy(t, b.addr(), "")
	up := "POST /1 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n"
	for _, tc := range []struct {
		name  string
		parts []string
	}{
		{"one write", []string{up + "\r\nPOST /2 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: example.com\r\n\r\n"}},
		{"after trailer", []string{up + "X-T: 1\r\n\r\nPOST /2 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: example.com\r\n\r\n"}},
		{"split in the last chunk", []string{up[:len(up)-2], "\r\n\r\nPOST /2 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nab", "cGET /3 HTTP/1.1\r\nHost: example.com\r\n\r\n"}},
		{"HTTP/1.0 keep-alive", []string{"POST /1 HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhelloPOST /2 HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.0\r\nHost: example.com\r\n\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, before := b.got()
			c, br := dialProxy(t, px.addr)
			for _, p := range tc.parts {
				io.WriteString(c, p)
				time.Sleep(20 * time.Millisecond)
			}
			want := []string{"/1:hello", "/2:abc", "/3:"}
			for i, w := range want {
				resp, body, err := r24MsgRead(br, "GET")
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				if resp.StatusCode != 200 || string(body) != w {
					t.Errorf("answer %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, w)
				}
			}
			_, reqs := b.got()
			reqs = reqs[len(before):]
			var got []string
			for _, r := range reqs {
				got = append(got, r.target+":"+string(r.body))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("backend got %q, want %q", got, want)
			}
		})
	}
}

// TestMsgBodyOnBodilessMethods: a body on GET, HEAD, DELETE (and
// OPTIONS) is forwarded with its Content-Length, whole, and never read as
// the next request; the connection stays in step.
func TestMsgBodyOnBodilessMethods(t *testing.T) {
	b := r24MsgStartBackend(t, func(r *http.Request, body []byte) string {
		s := r.Method + ":" + string(body)
		if r.Method == "HEAD" {
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(s))
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
	})
	px := r24MsgProxy(t, b.addr(), "")
	inner := "GET /inner HTTP/1.1\r\nHost: example.com\r\n\r\n"
	for _, method := range []string{"GET", "HEAD", "DELETE", "OPTIONS"} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", method, chunked), func(t *testing.T) {
				_, before := b.got()
				frame := fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(inner), inner)
				if chunked {
					frame = fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(inner), inner)
				}
				c, br := r24MsgSend(t, px.addr, method+" /b HTTP/1.1\r\nHost: example.com\r\n"+frame+"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n")
				resp, body, err := r24MsgRead(br, method)
				if err != nil {
					t.Fatal(err)
				}
				want := method + ":" + inner
				if method == "HEAD" {
					if resp.ContentLength != int64(len(want)) || len(body) != 0 {
						t.Errorf("HEAD answer: Content-Length %d, body %q; want %d and none", resp.ContentLength, body, len(want))
					}
				} else if string(body) != want {
					t.Errorf("answer %q, want %q", body, want)
				}
				if resp, body, err := r24MsgRead(br, "GET"); err != nil || string(body) != "GET:" {
					t.Errorf("second answer %v %q %v, want GET:", resp, body, err)
				}
				c.Close()
				_, reqs := b.got()
				reqs = reqs[len(before):]
				if len(reqs) != 2 || reqs[0].method != method || string(reqs[0].body) != inner || reqs[1].target != "/next" {
					t.Errorf("backend got %+v, want %s with the body, then /next", reqs, method)
				}
			})
		}
	}
}

// TestMsgBackendAnswersEarly: a backend that answers from the
// head alone, without reading the upload (413 and close; 200 with or
// without close): the client gets that answer, not a 502.
func TestMsgBackendAnswersEarly(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		status       int
		body         string
	}{
		{"413 close", "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!", 413, "big!"},
		{"200 close", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfast", 200, "fast"},
		{"200", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast", 200, "fast"},
	} {
		ln := serveRaw(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			io.WriteString(c, tc.answer)
			// Closed without reading the body: a reset when bytes are unread.
		})
		px := r24MsgProxy(t, ln.Addr().String(), "retries: { attempts: 1 }\n")
		for _, n := range []int{100, 64 << 10, 4 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				c, br := dialProxy(t, px.addr)
				go func() {
					fmt.Fprintf(c, "POST /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n", n)
					c.Write(bytes.Repeat([]byte("y"), n))
				}()
				resp, body, err := r24MsgRead(br, "POST")
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status || string(body) != tc.body {
					t.Errorf("client got %d %q, want the backend's %d %q", resp.StatusCode, body, tc.status, tc.body)
				}
			})
		}
	}
}

// TestMsgBodyResent: a request body goes whole to the backend a
// retry or a resend picks: after a refused connect (retry on another
// backend), after a kept upstream connection the backend closed while
// idle (resend on a new connection), after a GET whose connection was
// closed without an answer (idempotent: retried).
func TestMsgBodyResent(t *testing.T) {
	body := strings.Repeat("0123456789", 3000) // 30 KB
	chunked := fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x;e=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", 10000, body[:10000], 20000, body[10000:])
	plain := fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)

	t.Run("refused connect", func(t *testing.T) {
		good := r24MsgStartBackend(t, nil)
		dead := freeAddr(t)
		px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: "+dead+" }\n      - { address: "+good.addr()+" }\n")
		for i, frame := range []string{plain, chunked, plain, chunked} {
			c, br := r24MsgSend(t, px.addr, "POST /r HTTP/1.1\r\nHost: example.com\r\n"+frame)
			resp, _, err := r24MsgRead(br, "POST")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request %d: %v %v", i, resp, err)
			}
			c.Close()
		}
		_, reqs := good.got()
		for i, r := range reqs {
			if string(r.body) != body || r.header.Get("Content-Length") != fmt.Sprint(len(body)) || len(r.header["Transfer-Encoding"]) > 0 {
				t.Errorf("request %d: backend got %d bytes (CL %q TE %q), want %d", i, len(r.body), r.header.Get("Content-Length"), r.header["Transfer-Encoding"], len(body))
			}
		}
		if len(reqs) != 4 {
			t.Errorf("backend got %d requests, want 4", len(reqs))
		}
	})

	t.Run("idle upstream closed", func(t *testing.T) {
		var n atomic.Int64
		b := r24MsgStartBackend(t, func(r *http.Request, _ []byte) string {
			// Keep-alive in words, closed in deeds after the answer.
			n.Add(1)
			return "!HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		})
		px := r24MsgProxy(t, b.addr(), "")
		c, br := dialProxy(t, px.addr)
		for i, frame := range []string{plain, chunked, plain} {
			io.WriteString(c, "POST /r HTTP/1.1\r\nHost: example.com\r\n"+frame)
			resp, _, err := r24MsgRead(br, "POST")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request %d: %v %v", i, resp, err)
			}
			time.Sleep(100 * time.Millisecond) // the backend's close arrives
		}
		_, reqs := b.got()
		if len(reqs) != 3 {
			t.Errorf("backend got %d requests, want 3", len(reqs))
		}
		for i, r := range reqs {
			if string(r.body) != body {
				t.Errorf("request %d: backend got %d bytes, want %d", i, len(r.body), len(body))
			}
		}
	})

	t.Run("GET closed without answer", func(t *testing.T) {
		var first atomic.Bool
		bad := r24MsgStartBackend(t, func(*http.Request, []byte) string {
			first.Store(true)
			return "" // close, no answer
		})
		good := r24MsgStartBackend(t, nil)
		px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: "+bad.addr()+" }\n      - { address: "+good.addr()+" }\n")
		for i := range 2 {
			c, br := r24MsgSend(t, px.addr, "GET /g HTTP/1.1\r\nHost: example.com\r\n"+chunked)
			resp, _, err := r24MsgRead(br, "GET")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request %d: %v %v", i, resp, err)
			}
			c.Close()
		}
		_, reqs := good.got()
		_, badReqs := bad.got()
		if len(reqs) != 2 || len(badReqs) != 1 {
			t.Fatalf("good got %d, bad %d requests; want 2 and 1", len(reqs), len(badReqs))
		}
		for i, r := range append(reqs, badReqs...) {
			if string(r.body) != body {
				t.Errorf("request %d: backend got %d bytes, want %d", i, len(r.body), len(body))
			}
		}
	})
}

// TestMsgHTTP10Answers: an HTTP/1.0 client kept alive gets
// sluice's own error answers with keep-alive too (and the connection
// stays in step), and gets no 103 Early Hints (RFC 9110 §15.2).
func TestMsgHTTP10Answers(t *testing.T) {
	hints := r24MsgStartBackend(t, func(r *http.Request, _ []byte) string {
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	dead := freeAddr(t)
	px := startProxy(t, "retries: { attempts: 1 }\nroutes:\n  - match: { host: hints.test }\n    pool: h\n  - match: { host: dead.test }\n    pool: d\npools:\n  h:\n    backends:\n      - { address: "+hints.addr()+" }\n  d:\n    backends:\n      - { address: "+dead+" }\n")
	c, br := dialProxy(t, px.addr)
	for i, tc := range []struct {
		host   string
		status int
	}{
		{"hints.test", 200}, {"dead.test", 502}, {"nowhere.test", 404}, {"hints.test", 200},
	} {
		fmt.Fprintf(c, "GET /x HTTP/1.0\r\nHost: %s\r\nConnection: keep-alive\r\n\r\n", tc.host)
		resp, body, err := r24MsgRead(br, "GET")
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("answer %d (%s): %d %q, want %d", i+1, tc.host, resp.StatusCode, body, tc.status)
		}
		if !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") || resp.Close {
			t.Errorf("answer %d (%d): Connection %q close=%v, want keep-alive", i+1, resp.StatusCode, resp.Header.Get("Connection"), resp.Close)
		}
	}
}

// TestMsgOptionsAbsoluteFormSentAsAsterisk: RFC 9112 §3.2.4: an
// OPTIONS request in absolute-form with an empty path and no query asks
// about the server, and "the last proxy on the request chain MUST send a
// request-target of "*" when it forwards the request to the indicated
// origin server". sluice is that last proxy; it sends "OPTIONS /", which
// asks about the resource "/" instead.
func TestMsgOptionsAbsoluteFormSentAsAsterisk(t *testing.T) {
	b := r24MsgStartBackend(t, nil)
	px := r24MsgProxy(t, b.addr(), "")
	for _, tc := range []struct{ raw, want string }{
		{"OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n"},
		{"OPTIONS http://example.com:8080 HTTP/1.0\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: example.com:8080\r\n"},
		// With a query or a path, the path goes (regression: correct now).
		{"OPTIONS http://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n", "OPTIONS /?x HTTP/1.1\r\nHost: example.com\r\n"},
		{"OPTIONS http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", "OPTIONS / HTTP/1.1\r\nHost: example.com\r\n"},
	} {
		t.Run(tc.raw[:strings.Index(tc.raw, " HTTP/")], func(t *testing.T) {
			before, _ := b.got()
			c, br := r24MsgSend(t, px.addr, tc.raw)
			resp, _, err := r24MsgRead(br, "OPTIONS")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("answer %v %v", resp, err)
			}
			c.Close()
			after, _ := b.got()
			if got := after[len(before):]; !strings.HasPrefix(got, tc.want) {
				t.Errorf("backend got %q, want it to start %q", got, tc.want)
			}
		})
	}
}

// TestMsgExpectBehindLongAnswer: a request with Expect:
// 100-continue pipelined behind a GET whose answer is long (held,
// spliced) gets its 100 only after that answer, whole, and its own
// answer after its body; each backend request is whole.
func TestMsgExpectBehindLongAnswer(t *testing.T) {
	b := r24MsgStartBackend(t, func(r *http.Request, body []byte) string {
		if r.Method == "GET" {
			var n int
			fmt.Sscan(r.URL.Query().Get("n"), &n)
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("g", n))
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	px := r24MsgProxy(t, b.addr(), "")
	for _, n := range []int{100, 4096, 5000, 64 << 10, 2 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, br := r24MsgSend(t, px.addr, fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: example.com\r\n\r\n"+
				"POST /e HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", n))
			resp, body, err := r24MsgRead(br, "GET")
			if err != nil || resp.StatusCode != 200 || len(body) != n || strings.Trim(string(body), "g") != "" {
				t.Fatalf("first answer: %v, %d bytes, %v; want 200 with %d g", resp, len(body), err, n)
			}
			resp, _, err = r24MsgRead(br, "POST")
			if err != nil || resp.StatusCode != 100 {
				t.Fatalf("second answer: %v %v, want 100 Continue", resp, err)
			}
			io.WriteString(c, "hello")
			resp, body, err = r24MsgRead(br, "POST")
			if err != nil || resp.StatusCode != 200 || string(body) != "hello" {
				t.Fatalf("final answer: %v %q %v, want 200 hello", resp, body, err)
			}
		})
	}
}
