package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Found by review: message bodies, timeouts and slow or misbehaving clients on
// the front side.

// bodiesBackend serves each connection: it reads requests one by one and
// answers with script(path, request) the raw bytes to write, and whether
// to keep the connection. Paths it does not script get "good:<path>".
func bodiesBackend(t *testing.T, script func(c net.Conn, req *fasthttp.Request) bool) string {
	t.Helper()
	ln := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(br); err != nil {
				return
			}
			if !script(c, &req) {
				return
			}
		}
	})
	return ln.Addr().String()
}

// bodiesBackendLong is bodiesBackend without serveRaw's 5 s deadline on each
// backend connection (it would cut long tests' kept-alive connections
// mid-request).
func bodiesBackendLong(t *testing.T, script func(c net.Conn, req *fasthttp.Request) bool) string {
	t.Helper()
	return bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		return script(c, req)
	})
}

func bodiesProxy(t *testing.T, addr, extra string) *testProxy {
	t.Helper()
	return startProxy(t, extra+fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", addr))
}

// bodiesGood answers "good:<path>" with a Content-Length.
func bodiesGood(c net.Conn, req *fasthttp.Request) bool {
	body := "good:" + string(req.URI().Path())
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return err == nil
}

type bodiesAnswer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func bodiesRead(br *bufio.Reader, method string) bodiesAnswer {
	req, _ := http.NewRequest(method, "http://example.com/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return bodiesAnswer{err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return bodiesAnswer{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

func bodiesDo(c net.Conn, br *bufio.Reader, method, path string) bodiesAnswer {
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: example.com\r\n\r\n", method, path); err != nil {
		return bodiesAnswer{err: err}
	}
	return bodiesRead(br, method)
}

func bodiesCheckGood(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	for i := range 2 {
		p := fmt.Sprintf("/next%d", i)
		a := bodiesDo(c, br, "GET", p)
		if a.err != nil || a.status != 200 || string(a.body) != "good:"+p {
			t.Fatalf("follow-up %s: status %d body %.60q err %v", p, a.status, a.body, a.err)
		}
	}
}

// TestBodiesResponseLimit: max_response_bytes at and one over,
// for each way a body can be framed, inside and outside the lent classes.
func TestBodiesResponseLimit(t *testing.T) {
	for _, limit := range []int{5000, 16 << 10, 128 << 10, 200000} {
		for _, framing := range []string{"length", "chunked", "close"} {
			for _, n := range []int{limit, limit + 1} {
				name := fmt.Sprintf("%s/%d/%d", framing, limit, n)
				t.Run(name, func(t *testing.T) {
					body := patterned(n)
					addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
						if string(req.URI().Path()) != "/bad" {
							return bodiesGood(c, req)
						}
						switch framing {
						case "length":
							fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
							c.Write(body)
							return true
						case "chunked":
							io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
							for off := 0; off < n; off += 7000 {
								end := min(off+7000, n)
								fmt.Fprintf(c, "%x\r\n", end-off)
								c.Write(body[off:end])
								io.WriteString(c, "\r\n")
							}
							io.WriteString(c, "0\r\n\r\n")
							return true
						}
						io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
						c.Write(body)
						return false
					})
					px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_response_bytes: %d }\n", limit))
					c, br := dialProxy(t, px.addr)
					a := bodiesDo(c, br, "GET", "/bad")
					if a.err != nil {
						t.Fatal(a.err)
					}
					switch {
					case n <= limit && (a.status != 200 || !bytes.Equal(a.body, body)):
						t.Fatalf("status %d, %d body bytes; want 200 with %d", a.status, len(a.body), n)
					case n > limit && a.status != 502:
						t.Fatalf("status %d, %d body bytes; want 502", a.status, len(a.body))
					}
					bodiesCheckGood(t, c, br)
				})
			}
		}
	}
}

// TestBodiesShortBody: a backend that sends less than its
// Content-Length and closes: never passed on as complete, at every lent
// class and past them.
func TestBodiesShortBody(t *testing.T) {
	for _, n := range []int{10, 4096, 16 << 10, 64 << 10, 128 << 10, 128<<10 + 1, 300 << 10} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
				if string(req.URI().Path()) != "/bad" {
					return bodiesGood(c, req)
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				c.Write(patterned(n - 1))
				return false
			})
			px := bodiesProxy(t, addr, "")
			c, br := dialProxy(t, px.addr)
			a := bodiesDo(c, br, "GET", "/bad")
			if a.err != nil || a.status != 502 {
				t.Fatalf("status %d, %d body bytes, err %v; want 502", a.status, len(a.body), a.err)
			}
			bodiesCheckGood(t, c, br)
		})
	}
}

// TestBodiesNoBodyAnswers: HEAD, 204 and 304 answers with a
// Content-Length pass on without a body, and the next answers are in step.
func TestBodiesNoBodyAnswers(t *testing.T) {
	tests := []struct {
		name, method, resp string
		wantCL             string
	}{
		{"HEAD small", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "100"},
		{"HEAD lent size", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", "70000"},
		{"HEAD huge", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "99999999999"},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", ""},
		{"304 with CL", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\nETag: \"x\"\r\n\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
				if string(req.URI().Path()) != "/bad" {
					return bodiesGood(c, req)
				}
				_, err := io.WriteString(c, tt.resp)
				return err == nil
			})
			px := bodiesProxy(t, addr, "")
			c, br := dialProxy(t, px.addr)
			a := bodiesDo(c, br, tt.method, "/bad")
			if a.err != nil || len(a.body) != 0 {
				t.Fatalf("status %d body %q err %v", a.status, a.body, a.err)
			}
			if tt.wantCL != "" && a.header.Get("Content-Length") != tt.wantCL {
				t.Errorf("Content-Length %q, want %q", a.header.Get("Content-Length"), tt.wantCL)
			}
			bodiesCheckGood(t, c, br)
		})
	}
}

// TestBodiesRequestLimit: request bodies at and one over
// max_body_bytes, by length and chunked, get 200 and 413; the 413 is read
// by a client that sent its whole body before reading.
func TestBodiesRequestLimit(t *testing.T) {
	const limit = 70000
	addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		body := strconv.Itoa(len(req.Body()))
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return err == nil
	})
	px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_body_bytes: %d }\n", limit))
	for _, chunked := range []bool{false, true} {
		for _, n := range []int{limit, limit + 1} {
			t.Run(fmt.Sprintf("chunked=%v/%d", chunked, n), func(t *testing.T) {
				c, br := dialProxy(t, px.addr)
				var req bytes.Buffer
				body := patterned(n)
				if chunked {
					req.WriteString("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
					for off := 0; off < n; off += 10000 {
						end := min(off+10000, n)
						fmt.Fprintf(&req, "%x\r\n", end-off)
						req.Write(body[off:end])
						req.WriteString("\r\n")
					}
					req.WriteString("0\r\n\r\n")
				} else {
					fmt.Fprintf(&req, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n)
					req.Write(body)
				}
				if _, err := c.Write(req.Bytes()); err != nil {
					t.Fatal(err)
				}
				a := bodiesRead(br, "POST")
				if a.err != nil {
					t.Fatal(a.err)
				}
				if n <= limit && (a.status != 200 || string(a.body) != strconv.Itoa(n)) {
					t.Fatalf("status %d body %q, want 200 %d", a.status, a.body, n)
				}
				if n > limit && a.status != 413 {
					t.Fatalf("status %d body %q, want 413", a.status, a.body)
				}
			})
		}
	}
}

// echoLenBackend answers each request with its method, body length and
// a body of the length the query asks (?n=).
func echoLenBackend(t *testing.T) string {
	return bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		n, _ := strconv.Atoi(string(req.URI().QueryArgs().Peek("n")))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Got: %s %d %s\r\nContent-Length: %d\r\n\r\n", req.Header.Method(), len(req.Body()), req.Body()[:min(len(req.Body()), 8)], n)
		_, err := c.Write(patterned(n))
		return err == nil
	})
}

// TestBodiesPipelinedWithBodies: requests with bodies of many
// lengths, chunked ones too, pipelined in one write or split at odd
// places, each answered with a body around the lent classes, in order
// and whole.
func TestBodiesPipelinedWithBodies(t *testing.T) {
	px := bodiesProxy(t, echoLenBackend(t), "")
	type one struct {
		bodyLen, answer int
		chunked         bool
	}
	reqs := []one{{0, 5000, false}, {10, 4096, false}, {5000, 16 << 10, false}, {70000, 100, false}, {3, 70000, false}, {20000, 128 << 10, false}, {1, 128<<10 + 5, false}, {4097, 0, false}, {200000, 4097, false}, {7, 10, false}}
	for i := range reqs {
		if i%3 == 1 {
			reqs[i].chunked = true
		}
	}
	var wire bytes.Buffer
	for i, r := range reqs {
		body := bytes.Repeat([]byte{byte('a' + i)}, r.bodyLen)
		if r.chunked {
			fmt.Fprintf(&wire, "POST /?n=%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", r.answer)
			if r.bodyLen > 0 {
				fmt.Fprintf(&wire, "%x\r\n%s\r\n", r.bodyLen, body)
			}
			wire.WriteString("0\r\n\r\n")
		} else {
			fmt.Fprintf(&wire, "POST /?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", r.answer, r.bodyLen, body)
		}
	}
	for _, split := range []int{0, 1, 17, 4096, 9000} {
		t.Run(fmt.Sprintf("split%d", split), func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			done := make(chan error, 1)
			go func() {
				b := wire.Bytes()
				if split == 0 {
					_, err := c.Write(b)
					done <- err
					return
				}
				for off, step := 0, split; off < len(b); off += step {
					if off > 30000 {
						step = max(split, 4000) // small steps for the first requests only
					}
					if _, err := c.Write(b[off:min(off+step, len(b))]); err != nil {
						done <- err
						return
					}
					if step < 100 && off%(step*200) == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				done <- nil
			}()
			for i, r := range reqs {
				a := bodiesRead(br, "POST")
				if a.err != nil {
					t.Fatalf("answer %d: %v", i, a.err)
				}
				want := fmt.Sprintf("POST %d %s", r.bodyLen, bytes.Repeat([]byte{byte('a' + i)}, min(r.bodyLen, 8)))
				if a.status != 200 || strings.TrimSpace(a.header.Get("X-Got")) != strings.TrimSpace(want) || !bytes.Equal(a.body, patterned(r.answer)) {
					t.Fatalf("answer %d: status %d X-Got %q (want %q), %d body bytes (want %d)", i, a.status, a.header.Get("X-Got"), want, len(a.body), r.answer)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// bodiesServing counts the goroutines serving a client connection
// (fasthttp's serveConn; idle workers of its pool are not counted) and,
// with all, every goroutine's stack.
func bodiesServing() (int, string) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "fasthttp.(*Server).serveConn") {
			n++
		}
	}
	return n, string(buf)
}

// bodiesGoroutines waits for the goroutines serving client connections to
// fall to at most base+slack.
func bodiesGoroutines(t *testing.T, base, slack int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, stacks := bodiesServing()
		if n <= base+slack {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines serving connections, baseline %d:\n%s", n, base, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBodiesClientAborts: clients that go away mid-request head,
// mid-body, mid-chunk, and mid-answer (long answers, lent or not, slow or
// not read at all) leave no goroutine behind, and the proxy still serves.
func TestBodiesClientAborts(t *testing.T) {
	addr := echoLenBackend(t)
	px := bodiesProxy(t, addr, "timeouts: { client_read: 2s, client_write: 2s, idle: 3s }\n")
	// Warm up: one exchange so the upstream connection exists.
	c0, br0 := dialProxy(t, px.addr)
	if a := bodiesDo(c0, br0, "GET", "/?n=10"); a.status != 200 {
		t.Fatal(a)
	}
	c0.Close()
	time.Sleep(100 * time.Millisecond)
	base, _ := bodiesServing()
	aborts := []string{
		"GET / HT",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("a", 1000),
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
		"GET /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	for round := range 5 {
		for i, raw := range aborts {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, raw)
			if round%2 == 1 {
				// read a little of the answer first
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				b := make([]byte, 100)
				c.Read(b)
			}
			if i%2 == 0 {
				c.(*net.TCPConn).SetLinger(0) // reset
			}
			c.Close()
		}
	}
	c1, br1 := dialProxy(t, px.addr)
	if a := bodiesDo(c1, br1, "GET", "/?n=70000"); a.status != 200 || len(a.body) != 70000 {
		t.Fatalf("after the aborts: %d, %d bytes, %v", a.status, len(a.body), a.err)
	}
	c1.Close()
	bodiesGoroutines(t, base, 0, 4*time.Second)
}

// TestBodiesHTTP10KeepAlive: an HTTP/1.0 client that asks for
// keep-alive gets it, with framed answers of every kind of upstream body,
// and its idle connection is closed after timeouts.idle.
func TestBodiesHTTP10KeepAlive(t *testing.T) {
	addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		n, _ := strconv.Atoi(string(req.URI().QueryArgs().Peek("n")))
		switch string(req.URI().Path()) {
		case "/chunked":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", n, patterned(n))
			return true
		case "/close":
			fmt.Fprintf(c, "HTTP/1.0 200 OK\r\n\r\n%s", patterned(n))
			return false
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, patterned(n))
		return true
	})
	px := bodiesProxy(t, addr, "timeouts: { idle: 400ms, client_read: 5s }\n")
	c, br := dialProxy(t, px.addr)
	for i, path := range []string{"/?n=10", "/?n=70000", "/chunked?n=5000", "/close?n=9000", "/?n=200000", "/?n=0"} {
		for _, method := range []string{"GET", "POST"} {
			body := ""
			if method == "POST" {
				body = "hello"
			}
			if _, err := fmt.Fprintf(c, "%s %s HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body); err != nil {
				t.Fatal(err)
			}
			a := bodiesRead(br, method)
			n, _ := strconv.Atoi(path[strings.Index(path, "n=")+2:])
			if a.err != nil || a.status != 200 || !bytes.Equal(a.body, patterned(n)) {
				t.Fatalf("%d %s %s: status %d, %d bytes, err %v", i, method, path, a.status, len(a.body), a.err)
			}
			if a.header.Get("Content-Length") != strconv.Itoa(n) {
				t.Fatalf("%s: Content-Length %q", path, a.header.Get("Content-Length"))
			}
		}
	}
	start := time.Now()
	got, err := io.ReadAll(br)
	if took := time.Since(start); err != nil || len(got) != 0 || took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("idle HTTP/1.0 keep-alive connection: %q %v after %v, want a close after about 400ms", got, err, took)
	}
}

// TestBodiesIdleAfterEachAnswer: the idle timeout closes a
// kept-alive connection after every kind of answer: short, long (awaited
// in its write), over the lent limit, after a 100 Continue, after a
// pipelined pair, a HEAD.
func TestBodiesIdleAfterEachAnswer(t *testing.T) {
	px := bodiesProxy(t, echoLenBackend(t), "timeouts: { idle: 400ms, client_read: 5s }\n")
	cases := []struct {
		name, raw string
		answers   int
		continued bool
	}{
		{"short", "GET /?n=10 HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"4096", "GET /?n=4096 HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"long awaited", "GET /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"over lent", "GET /?n=200000 HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
		{"post big body", "POST /?n=70000 HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + strings.Repeat("b", 200000), 1, false},
		{"pipelined", "GET /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n", 2, false},
		{"continue", "POST /?n=70000 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 1, true},
		{"head", "HEAD /?n=70000 HTTP/1.1\r\nHost: x\r\n\r\n", 1, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			if tt.continued {
				if a := bodiesRead(br, "POST"); a.status != 100 {
					t.Fatalf("want 100, got %d %v", a.status, a.err)
				}
				io.WriteString(c, "abc")
			}
			method := "GET"
			if strings.HasPrefix(tt.raw, "HEAD") {
				method = "HEAD"
			}
			for range tt.answers {
				if a := bodiesRead(br, method); a.err != nil || a.status != 200 {
					t.Fatalf("status %d err %v", a.status, a.err)
				}
			}
			start := time.Now()
			got, err := io.ReadAll(br)
			if took := time.Since(start); err != nil || len(got) != 0 || took < 300*time.Millisecond || took > 2*time.Second {
				t.Fatalf("%q %v after %v, want a close after about 400ms", got, err, took)
			}
		})
	}
}

// TestBodiesSlowReaderLent: a client that stops reading a lent
// answer (70 KiB, small socket buffers) is cut after client_write, its
// goroutine ends, and other clients' lent answers meanwhile stay whole.
func TestBodiesSlowReaderLent(t *testing.T) {
	addr := echoLenBackend(t)
	cfg := "timeouts: { client_write: 300ms, idle: 5s }\n" + fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", addr)
	px := startProxyOn(t, cfg, nil, func(ln net.Listener) net.Listener { return smallSendBuffers{ln} })
	c0, br0 := dialProxy(t, px.addr)
	if a := bodiesDo(c0, br0, "GET", "/?n=70000"); a.status != 200 {
		t.Fatal(a.err)
	}
	time.Sleep(50 * time.Millisecond)
	base, _ := bodiesServing()
	var slow []net.Conn
	for range 4 {
		d := net.Dialer{}
		c, err := d.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		defer c.Close()
		io.WriteString(c, "GET /?n=120000 HTTP/1.1\r\nHost: x\r\n\r\nGET /?n=120000 HTTP/1.1\r\nHost: x\r\n\r\n")
		slow = append(slow, c)
	}
	for i := range 30 {
		n := []int{4000, 16000, 60000, 120000}[i%4]
		if a := bodiesDo(c0, br0, "GET", fmt.Sprintf("/?n=%d", n)); a.status != 200 || !bytes.Equal(a.body, patterned(n)) {
			t.Fatalf("request %d: %d, %d bytes, %v", i, a.status, len(a.body), a.err)
		}
	}
	// The proxy's side of each slow connection ends after client_write,
	// though the clients still read nothing (what a client then reads
	// depends on TCP's zero-window probes, not on the proxy).
	bodiesGoroutines(t, base, 0, 2*time.Second)
	for _, c := range slow {
		c.Close()
	}
}

// TestBodiesHeapBounded: many requests with bodies across the
// lent classes and beyond, from many connections, leave the heap where
// it was.
func TestBodiesHeapBounded(t *testing.T) {
	px := bodiesProxy(t, echoLenBackend(t), "")
	run := func(rounds int) {
		var conns []net.Conn
		var brs []*bufio.Reader
		for range 16 {
			c, br := dialProxy(t, px.addr)
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			conns, brs = append(conns, c), append(brs, br)
		}
		sizes := []int{100, 4096, 16000, 64000, 128 << 10, 200000, 1 << 20}
		done := make(chan error, len(conns))
		for i := range conns {
			go func(i int) {
				for r := range rounds {
					// A deadline per round: it catches a hung exchange, not a
					// run that -race (patterned, per byte) and a loaded
					// machine stretch past 20 s in all.
					_ = conns[i].SetDeadline(time.Now().Add(20 * time.Second))
					n := sizes[(i+r)%len(sizes)]
					body := strings.Repeat("p", sizes[(i+2*r)%len(sizes)]/4)
					if _, err := fmt.Fprintf(conns[i], "POST /?n=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, len(body), body); err != nil {
						done <- err
						return
					}
					a := bodiesRead(brs[i], "POST")
					if a.err != nil || a.status != 200 || len(a.body) != n {
						done <- fmt.Errorf("conn %d round %d: %d %d %v", i, r, a.status, len(a.body), a.err)
						return
					}
				}
				done <- nil
			}(i)
		}
		for range conns {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	heap := func() uint64 {
		var m runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	run(8)
	time.Sleep(200 * time.Millisecond)
	h1 := heap()
	run(40) // 5x the warm-up
	time.Sleep(200 * time.Millisecond)
	h2 := heap()
	t.Logf("heap in use %d KiB after warm-up, %d KiB after 5x more", h1>>10, h2>>10)
	if h2 > h1+8<<20 {
		t.Errorf("heap grew from %d to %d KiB", h1>>10, h2>>10)
	}
}

// TestBodiesIdleAfterSlowAnswer: timeouts.idle is the wait for
// the next request, counted from when the answer has been written. A
// keep-alive client that takes longer than idle (but well within
// client_write) to read a long answer and then sends its next request
// at once must be answered, whatever the answer's length.
func TestBodiesIdleAfterSlowAnswer(t *testing.T) {
	addr := echoLenBackend(t)
	cfg := "timeouts: { idle: 500ms, client_write: 10s, client_read: 5s }\n" + fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", addr)
	px := startProxyOn(t, cfg, nil, func(ln net.Listener) net.Listener { return smallSendBuffers{ln} })
	// Splicing off. 100000: the write that ends the answer waits for
	// the next request (AwaitNextRequest); 200000: a yield and a read
	// after it (over keptBodyLimit). Spliced answers are left out:
	// with these 4 KiB socket buffers the kernel sometimes still holds
	// tens of KiB of it when its write returns (seen: 658 ms of this
	// client's reading), which is the client's time, not idle's; so does
	// a short answer, held whole (30000 bytes: every time).
	px.proxy.pipes.off.Store(true)
	px.proxy.bigPipes.off.Store(true)
	for _, n := range []int{100000, 200000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			// Read the answer slowly: about 1.2 s in all, over twice idle.
			start := time.Now()
			br := bufio.NewReaderSize(&slowReader{r: c, pause: 1200 * time.Millisecond * 2048 / time.Duration(n)}, 2048)
			a := bodiesRead(br, "GET")
			if a.err != nil || a.status != 200 || len(a.body) != n {
				t.Fatalf("first answer: %d, %d bytes, %v", a.status, len(a.body), a.err)
			}
			took := time.Since(start)
			a = bodiesDo(c, br, "GET", "/?n=10")
			if a.err != nil || a.status != 200 {
				// Found by review, fixed: an answer of 4 KiB to 128 KiB whose write waits
				// for the next request (AwaitNextRequest) dates the idle
				// deadline from the start of its write, not its end: a
				// slow reader's connection is closed the moment its
				// answer is through (an answer over 128 KiB keeps it).
				t.Fatalf("after a %d-byte answer read in %v (idle 500ms): next request got %d, %v; want 200", n, took, a.status, a.err)
			}
		})
	}
}

// slowReader reads at most 2048 bytes at a time, pausing before each.
type slowReader struct {
	r     io.Reader
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), 2048)])
}

// TestBodiesPipelinedBodyLooksLikeBareLFHead: a request pipelined
// behind one whose answer is long (its body's tail written straight from
// the body, more than the server's 4 KiB buffer, after the held first
// part) has the rest of its body read in the turn that follows that
// write. netconn's bare-LF head watch must not take that body for a head.
// (Passes: kept as a regression check.)
func TestBodiesPipelinedBodyLooksLikeBareLFHead(t *testing.T) {
	px := bodiesProxy(t, echoLenBackend(t), "timeouts: { client_read: 3s, idle: 5s }\n")
	for _, answer := range []int{20000, 200000} {
		t.Run(strconv.Itoa(answer), func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			rest := "GET /inner HTTP/1.1\nHost: x\n\n"
			body := strings.Repeat("A", 10) + rest
			first := fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", answer) +
				fmt.Sprintf("POST /?n=3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)) + body[:10]
			if _, err := io.WriteString(c, first); err != nil {
				t.Fatal(err)
			}
			a := bodiesRead(br, "GET")
			if a.err != nil || a.status != 200 || len(a.body) != answer {
				t.Fatalf("first answer: %d, %d bytes, %v", a.status, len(a.body), a.err)
			}
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, rest); err != nil {
				t.Fatal(err)
			}
			a = bodiesRead(br, "POST")
			want := fmt.Sprintf("POST %d AAAAAAAA", len(body))
			if a.err != nil || a.status != 200 || a.header.Get("X-Got") != want {
				t.Fatalf("pipelined POST: %d %q (X-Got %q), %v; want 200 with X-Got %q", a.status, a.body, a.header.Get("X-Got"), a.err, want)
			}
		})
	}
}

// TestBodiesPipelinedUploadHoldsAnswer: a client pipelines a GET
// and then a POST whose body is still uploading (its rest comes 1 s
// later, without waiting for anything). The GET's answer is complete at
// the proxy long before; nginx sends it at once, sluice (fasthttp) once
// the upload is done, unless the answer is long.
func TestBodiesPipelinedUploadHoldsAnswer(t *testing.T) {
	px := bodiesProxy(t, echoLenBackend(t), "timeouts: { client_read: 5s, idle: 5s }\n")
	for _, answer := range []int{100, 5000, 20000} {
		t.Run(strconv.Itoa(answer), func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			start := time.Now()
			first := fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", answer) +
				"POST /?n=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("a", 1000)
			if _, err := io.WriteString(c, first); err != nil {
				t.Fatal(err)
			}
			go func() {
				time.Sleep(time.Second)
				io.WriteString(c, strings.Repeat("b", 1000))
			}()
			a := bodiesRead(br, "GET")
			took := time.Since(start)
			if a.err != nil || a.status != 200 || len(a.body) != answer {
				t.Fatalf("first answer: %d, %d bytes, %v", a.status, len(a.body), a.err)
			}
			// Known limitation (README, Architecture): fasthttp's server
			// flushes an answer only when no pipelined request waits in
			// its read buffer, so an answer up to about 8 KiB (or, past
			// 4 KiB, its tail) waits until the POST's body has come
			// whole; longer ones go out at once. Pinned here: it comes
			// when the upload ends (1 s), never as late as client_read
			// (5 s), and at once for the long answer.
			limit := 3 * time.Second
			if answer > 8<<10 {
				limit = 500 * time.Millisecond
			}
			t.Logf("the GET's %d-byte answer came after %v", answer, took)
			if took > limit {
				t.Errorf("the GET's %d-byte answer came after %v, want it within %v", answer, took, limit)
			}
			if a = bodiesRead(br, "POST"); a.status != 200 {
				t.Fatalf("POST: %d %v", a.status, a.err)
			}
		})
	}
}
