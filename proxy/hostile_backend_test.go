package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Hostile or buggy backends, from a review: each scenario scripts what the backend
// writes for a request to /bad, and every other request is answered
// "good:<path>" correctly, so the test can check that the next request,
// on the same client connection (and the same upstream connection when
// the proxy keeps it), gets its own answer.

// hbBackend serves each connection: it reads requests one by one and
// calls bad for a request to /bad (which writes what it likes and
// reports whether to keep reading), else answers "good:<path>". conns
// counts connections accepted.
func hbBackend(t *testing.T, bad func(c net.Conn, method string) bool) (string, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	ln := serveRaw(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(br); err != nil {
				return
			}
			path := string(req.URI().Path())
			if path == "/bad" {
				if !bad(c, string(req.Header.Method())) {
					return
				}
				continue
			}
			body := "good:" + path
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return ln.Addr().String(), &conns
}

func hbProxy(t *testing.T, addr string, response string) *testProxy {
	t.Helper()
	return startProxy(t, fmt.Sprintf("timeouts: { response: %s }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", response, addr))
}

type hbAnswer struct {
	status int
	header http.Header
	body   string
	err    error
}

// hbDo sends one request on c and reads its answer.
func hbDo(c net.Conn, br *bufio.Reader, method, path string) hbAnswer {
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: example.com\r\n\r\n", method, path); err != nil {
		return hbAnswer{err: err}
	}
	req, _ := http.NewRequest(method, "http://example.com"+path, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return hbAnswer{err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return hbAnswer{status: resp.StatusCode, header: resp.Header, body: string(body), err: err}
}

// hbCheckGood asserts the next requests on the same client connection
// get their own correct answers.
func hbCheckGood(t *testing.T, c net.Conn, br *bufio.Reader, n int) {
	t.Helper()
	for i := range n {
		p := fmt.Sprintf("/next%d", i)
		a := hbDo(c, br, "GET", p)
		if a.err != nil || a.status != 200 || a.body != "good:"+p {
			t.Fatalf("follow-up %s on the same client connection: status %d body %q err %v; want 200 %q", p, a.status, a.body, a.err, "good:"+p)
		}
	}
}

func write(c net.Conn, s string) bool {
	_, err := io.WriteString(c, s)
	return err == nil
}

// TestHostileBackendFramingErrors: answers that cannot be passed on get
// a 502 (or 504 for silence), and the client connection and the
// backend's next answers are unharmed.
func TestHostileBackendFramingErrors(t *testing.T) {
	tests := []struct {
		name string
		bad  func(c net.Conn, method string) bool
		want []int // acceptable statuses
	}{
		{"short body then close", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
			return false
		}, []int{502}},
		{"short body then silence", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
			time.Sleep(1500 * time.Millisecond)
			return false
		}, []int{504}},
		{"head only then silence", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")
			time.Sleep(1500 * time.Millisecond)
			return false
		}, []int{504}},
		{"chunked no final chunk then close", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
			return false
		}, []int{502}},
		{"chunked bad size", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
			return false
		}, []int{502}},
		{"chunked negative size", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n")
			return false
		}, []int{502}},
		{"chunked huge size", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n")
			return false
		}, []int{502}},
		{"1xx flood", func(c net.Conn, _ string) bool {
			write(c, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 150)+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return false
		}, []int{502}},
		{"101 unasked", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x00\x01garbage")
			return false
		}, []int{502}},
		{"HTTP/0.9 style", func(c net.Conn, _ string) bool {
			write(c, "hello world\r\n\r\n")
			return false
		}, []int{502}},
		{"status 000", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nok")
			return false
		}, []int{502}},
		{"head over 16 KiB", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 17<<10)+"\r\nContent-Length: 2\r\n\r\nok")
			return false
		}, []int{502}},
		{"CL 5, 5", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello")
			return true
		}, []int{502, 200}},
		{"CL +5", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello")
			return true
		}, []int{502, 200}},
		{"CL -1", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello")
			return true
		}, []int{502}},
		{"CL 0x5", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello")
			return true
		}, []int{502}},
		{"two different CL", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\nhello")
			return true
		}, []int{502}},
		{"huge CL", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\nhello")
			return true
		}, []int{502}},
		{"huger CL", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello")
			return true
		}, []int{502}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := hbBackend(t, tt.bad)
			px := hbProxy(t, addr, "400ms")
			c, br := dialProxy(t, px.addr)
			start := time.Now()
			a := hbDo(c, br, "GET", "/bad")
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("answer took %v", el)
			}
			ok := false
			for _, w := range tt.want {
				ok = ok || a.status == w
			}
			if a.err != nil || !ok {
				t.Fatalf("got status %d body %q err %v, want one of %v", a.status, a.body, a.err, tt.want)
			}
			if a.status == 200 && a.body != "hello" {
				t.Fatalf("200 with body %q", a.body)
			}
			hbCheckGood(t, c, br, 3)
		})
	}
}

// TestHostileBackendOutOfStepBytes: bytes past the end of an answer, in
// the same write or later, must never reach the next request's client.
func TestHostileBackendOutOfStepBytes(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
	tests := []struct {
		name   string
		method string
		bad    func(c net.Conn, method string) bool
		body   string
		status int
	}{
		{"longer than CL, one write", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"+evil)
		}, "hello", 200},
		{"longer than CL, later write", "GET", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
			time.Sleep(50 * time.Millisecond)
			return write(c, evil)
		}, "hello", 200},
		{"two responses pipelined", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"+evil)
		}, "hello", 200},
		{"HEAD with body", "HEAD", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
		}, "", 200},
		{"HEAD with body later", "HEAD", func(c net.Conn, _ string) bool {
			write(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
			time.Sleep(50 * time.Millisecond)
			return write(c, evil)
		}, "", 200},
		{"204 with body", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nEVIL")
		}, "", 204},
		{"204 with body chunked", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nEVIL\r\n0\r\n\r\n")
		}, "", 204},
		{"304 with body", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\nEVIL")
		}, "", 304},
		{"1xx with body", "GET", func(c net.Conn, _ string) bool {
			return write(c, "HTTP/1.1 100 Continue\r\nContent-Length: 4\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}, "hello", 200},
		{"response before request read", "GET", nil, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			if tt.bad == nil {
				// The backend answers /bad's successor before it reads:
				// every connection starts with an unasked answer.
				ln := serveRaw(t, func(c net.Conn) {
					write(c, evil)
					br := bufio.NewReader(c)
					for {
						var req fasthttp.Request
						if err := req.Read(br); err != nil {
							return
						}
						body := "good:" + string(req.URI().Path())
						if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
							return
						}
					}
				})
				addr = ln.Addr().String()
				px := hbProxy(t, addr, "500ms")
				c, br := dialProxy(t, px.addr)
				for i := range 3 {
					p := fmt.Sprintf("/p%d", i)
					a := hbDo(c, br, "GET", p)
					// An answer a backend sends first, on a fresh
					// connection, is its word for the request (README:
					// only an early 408 is set aside); what must never
					// happen is another request's answer.
					if a.err == nil && strings.HasPrefix(a.body, "good:") && a.body != "good:"+p {
						t.Fatalf("%s got another request's answer %q", p, a.body)
					}
					if a.err != nil {
						t.Fatalf("%s: %v", p, a.err)
					}
					time.Sleep(20 * time.Millisecond)
				}
				return
			}
			addr, _ = hbBackend(t, tt.bad)
			px := hbProxy(t, addr, "500ms")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, tt.method, "/bad")
			if a.err != nil || a.status != tt.status || a.body != tt.body {
				t.Fatalf("got %d %q err %v, want %d %q", a.status, a.body, a.err, tt.status, tt.body)
			}
			time.Sleep(100 * time.Millisecond)
			hbCheckGood(t, c, br, 3)
			// And from a second client connection.
			c2, br2 := dialProxy(t, px.addr)
			hbCheckGood(t, c2, br2, 2)
		})
	}
}

// TestHostileBackendHeaderBytes: what a client gets for odd bytes in a
// backend's head: it must never see a bare CR, NUL or other control byte
// inside a field value or the status line (a client that takes a bare CR
// for a line end would read an injected field), and the next answer must
// be fine.
//
// Found by review, fixed in session 15 (proxy/handler.go:366, general path; plainhead.go refuses such a
// reason, so the head goes to fasthttp's parser, which keeps it): a
// reason phrase with a NUL or another control byte ("HTTP/1.1 200 O\x00K")
// is passed to the client byte for byte, though the same bytes in a field
// value get a 502 (fasthttp refuses those) and a bare CR in the reason is
// made a space. RFC 9112 §4 allows only HTAB, SP, VCHAR and obs-text in a
// reason; a NUL truncates the line for C-string clients and logs, and the
// proxy re-emits the backend's invalid status line under its own
// HTTP/1.1. Want: 502, or the bytes replaced (or the reason dropped).
// Subtests "control byte in reason" and "NUL in reason" fail.
func TestHostileBackendHeaderBytes(t *testing.T) {
	tests := []struct {
		name string
		head string
	}{
		{"bare CR in value", "HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: 1\r\nContent-Length: 5\r\n\r\n"},
		{"NUL in value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\n"},
		{"bare CR in Set-Cookie", "HTTP/1.1 200 OK\r\nSet-Cookie: a=b\rX-Injected: 1\r\nContent-Length: 5\r\n\r\n"},
		{"bare CR in reason", "HTTP/1.1 200 OK\rX-Injected: 1\r\nContent-Length: 5\r\n\r\n"},
		{"control byte in reason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 5\r\n\r\n"},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\nContent-Length: 5\r\n\r\n"},
		{"obs-text", "HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 5\r\n\r\n"},
		{"line with no colon", "HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 5\r\n\r\n"},
		{"bare CR in value, chunked", "HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"lowercase version", "http/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
		{"odd Set-Cookie", "HTTP/1.1 200 OK\r\nSet-Cookie: a=\"b;c\"; Path=/; \x7f\r\nSet-Cookie: a=2; Path=/x\r\nContent-Length: 5\r\n\r\n"},
		{"many small headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", 2500) + "Content-Length: 5\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.head
			if !strings.Contains(resp, "chunked") {
				resp += "hello"
			}
			var rawHead atomic.Value
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, resp) })
			px := hbProxy(t, addr, "500ms")
			c, br := dialProxy(t, px.addr)
			// Read the raw head the client gets.
			if _, err := io.WriteString(c, "GET /bad HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				head.WriteString(line)
				if err != nil {
					t.Fatalf("reading head: %v (so far %q)", err, head.String())
				}
				if line == "\r\n" {
					break
				}
			}
			h := head.String()
			rawHead.Store(h)
			status := h[9:12]
			// Read its body by Content-Length (the proxy sends one).
			var cl int
			for _, l := range strings.Split(h, "\r\n") {
				if strings.HasPrefix(strings.ToLower(l), "content-length:") {
					fmt.Sscanf(strings.TrimSpace(l[len("content-length:"):]), "%d", &cl)
				}
			}
			body := make([]byte, cl)
			if _, err := io.ReadFull(br, body); err != nil {
				t.Fatalf("reading body: %v", err)
			}
			t.Logf("client got %d head bytes, status %s, body %q; head %.300q", len(h), status, body, h)
			// No control byte but HTAB and the CRLFs that end lines:
			// RFC 9112 §4 (reason-phrase = *( HTAB / SP / VCHAR /
			// obs-text )) and RFC 9110 §5.5 (CR, LF, NUL in a field
			// value: reject or replace with SP).
			for i := 0; i < len(h); i++ {
				switch b := h[i]; {
				case b == '\r' && i+1 < len(h) && h[i+1] == '\n':
					i++
				case b == '\t':
				case b < 0x20 || b == 0x7f:
					t.Errorf("control byte %#x reached the client at %d: %.200q", b, i, h)
				}
			}
			if strings.Contains(strings.ToLower(h), "\r\nx-injected:") {
				t.Errorf("injected field as a line: %.200q", h)
			}
			if status == "200" && string(body) != "hello" {
				t.Errorf("200 with body %q", body)
			}
			if strings.Count(tt.head, "\r\n") > maxKeptFields+2 {
				// Over maxKeptFields fields: the answer closes its
				// connection (since session 24), and says so.
				if !strings.Contains(h, "\r\nConnection: close\r\n") {
					t.Errorf("an answer of over %d fields without Connection: close: %.200q", maxKeptFields, h)
				}
				return
			}
			hbCheckGood(t, c, br, 2)
		})
	}
}

// TestHostileBackendSlowloris: a backend that dribbles its answer one
// byte at a time gets it through when it finishes within
// timeouts.response, and a 504 (in time) when it does not.
func TestHostileBackendSlowloris(t *testing.T) {
	answer := "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 5\r\n\r\nhello"
	t.Run("within timeout", func(t *testing.T) {
		addr, _ := hbBackend(t, func(c net.Conn, _ string) bool {
			for i := range len(answer) {
				if !write(c, answer[i:i+1]) {
					return false
				}
				time.Sleep(2 * time.Millisecond)
			}
			return true
		})
		px := hbProxy(t, addr, "2s")
		c, br := dialProxy(t, px.addr)
		a := hbDo(c, br, "GET", "/bad")
		if a.err != nil || a.status != 200 || a.body != "hello" {
			t.Fatalf("got %d %q %v", a.status, a.body, a.err)
		}
		hbCheckGood(t, c, br, 2)
	})
	t.Run("past timeout", func(t *testing.T) {
		addr, _ := hbBackend(t, func(c net.Conn, _ string) bool {
			for i := range len(answer) {
				if !write(c, answer[i:i+1]) {
					return false
				}
				time.Sleep(50 * time.Millisecond)
			}
			return false
		})
		px := hbProxy(t, addr, "300ms")
		c, br := dialProxy(t, px.addr)
		start := time.Now()
		a := hbDo(c, br, "GET", "/bad")
		if a.err != nil || a.status != 504 {
			t.Fatalf("got %d %q %v, want 504", a.status, a.body, a.err)
		}
		if el := time.Since(start); el > 1500*time.Millisecond {
			t.Fatalf("504 after %v with a 300ms response timeout", el)
		}
		hbCheckGood(t, c, br, 2)
	})
}

// TestHostileBackendTrailers: chunked answers with extensions and
// trailers pass with their body, the trailers dropped.
func TestHostileBackendTrailers(t *testing.T) {
	tests := []struct{ name, resp string }{
		{"extension", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\n0\r\n\r\n"},
		{"trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: secret\r\n\r\n"},
		{"undeclared trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: secret\r\n\r\n"},
		{"forbidden trailer CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"},
		{"trailer Set-Cookie", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Set-Cookie\r\n\r\n5\r\nhello\r\n0\r\nSet-Cookie: evil=1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, tt.resp) })
			px := hbProxy(t, addr, "500ms")
			c, br := dialProxy(t, px.addr)
			a := hbDo(c, br, "GET", "/bad")
			if a.err != nil || (a.status != 200 && a.status != 502) {
				t.Fatalf("got %d %q %v", a.status, a.body, a.err)
			}
			if a.status == 200 {
				if a.body != "hello" {
					t.Errorf("body %q", a.body)
				}
				if a.header.Get("X-T") != "" || a.header.Get("Set-Cookie") != "" {
					t.Errorf("trailer passed on as a header: %v", a.header)
				}
			}
			hbCheckGood(t, c, br, 2)
		})
	}
}

// TestHostileBackendChunkedUnderOtherVersion: a final answer whose
// status line names a version other than exactly HTTP/1.1 or HTTP/1.0
// (HTTP/1.2, which RFC 9110 §2.5 says to read as HTTP/1.1, or HTTP/2.0)
// with Transfer-Encoding: chunked.
//
// Found by review, fixed in session 15 (proxy/upclient.go:361 and :276): readResponse refuses TE in an
// HTTP/1.0 answer (errTENotHTTP11) because fasthttp ignores
// Transfer-Encoding in any answer it does not take for HTTP/1.1 and reads
// the body to the close. But statusCode sets http10 only for the exact
// "HTTP/1.0", while fasthttp drops TE for every version but the exact
// "HTTP/1.1" (header.go: noHTTP11 = !bytes.Equal(proto, "HTTP/1.1");
// isHTTPVersion accepts any HTTP/d.d). So "HTTP/1.2 200 OK" with a chunked
// body is read to the close: the client gets 200 with the chunk framing
// ("5\r\nhello\r\n0\r\n\r\n") as its body, and a backend that keeps the
// connection open after a complete answer gets a 504 after
// timeouts.response instead of its answer. The same hole errTENotHTTP11
// was added to close (TestHTTP10ChunkedRefused), reopened by any other
// minor/major version. Want: decode as chunked (HTTP/1.x, x>1) or 502.
func TestHostileBackendChunkedUnderOtherVersion(t *testing.T) {
	for _, version := range []string{"HTTP/1.2", "HTTP/2.0"} {
		for _, closeAfter := range []bool{true, false} {
			name := version + " close"
			if !closeAfter {
				name = version + " keep-alive"
			}
			t.Run(name, func(t *testing.T) {
				addr, _ := hbBackend(t, func(c net.Conn, _ string) bool {
					write(c, version+" 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
					return !closeAfter
				})
				px := hbProxy(t, addr, "300ms")
				c, br := dialProxy(t, px.addr)
				a := hbDo(c, br, "GET", "/bad")
				if a.err != nil {
					t.Fatal(a.err)
				}
				if a.status == 200 && a.body != "hello" {
					t.Fatalf("client got 200 with the chunk framing as its body: %q", a.body)
				}
				if a.status != 200 && a.status != 502 {
					t.Fatalf("client got %d %q for a complete answer; want it decoded (200 \"hello\") or 502", a.status, a.body)
				}
				hbCheckGood(t, c, br, 2)
			})
		}
	}
}
