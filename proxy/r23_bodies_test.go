package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Review 23: request and response bodies, and the memory, descriptors
// and goroutines they hold, end to end through a real proxy.

// r23Wire is an answer of body framed as framing ("length", "chunked",
// "close"); announce, when not negative, is the Content-Length said.
func r23Wire(framing string, body []byte, announce int) []byte {
	var w bytes.Buffer
	switch framing {
	case "length":
		if announce < 0 {
			announce = len(body)
		}
		fmt.Fprintf(&w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", announce)
		w.Write(body)
	case "chunked":
		w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < len(body); i += 9000 {
			j := min(i+9000, len(body))
			fmt.Fprintf(&w, "%x\r\n", j-i)
			w.Write(body[i:j])
			w.WriteString("\r\n")
		}
		w.WriteString("0\r\n\r\n")
	case "close":
		w.WriteString("HTTP/1.1 200 OK\r\n\r\n")
		w.Write(body)
	}
	return w.Bytes()
}

// r23Fds counts the process's open descriptors.
func r23Fds() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// r23Serving counts the goroutines serving a connection or an exchange
// (fasthttp's idle workers, which expire on their own, left out).
func r23Serving() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("serveConn")) || bytes.Contains(g, []byte("(*upClient)")) {
			n++
		}
	}
	return n
}

// r23Heap is the heap in use after two collections.
func r23Heap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// Found by review. What was wrong: a spliced answer whose write fails (the client reset its
// connection while the backend was answering, or stalled past
// timeouts.client_write) keeps its pipe, and the body's pages in it,
// open until the garbage collector finds the closed connection it was
// lent to: bodyPipe.WriteTo (proxy/splice.go:161) and
// netconn.Conn.WriteFromPipe (netconn/splice.go:193-210) return the
// error without giving the pipe back, and netconn.Conn.Close keeps what
// was lent (netconn/conn.go:1189). sluice's steady state allocates
// nothing ("the collector rarely runs", README, Memory and GC), so such
// pipes pile up to the bound (1024 pipes, 2048 descriptors, up to
// 992 × 128 KiB + 32 × 1 MiB of kernel memory holding bodies nobody will
// read), and past it splicing stops until a collection: the same harm
// as the closing answers' pipes fixed in session 20
// (TestSplicedClosingAnswersGiveTheirPipesBack). HAProxy closes a
// stream's pipe when the stream ends. Expected: after 24 aborted spliced
// answers, a few pipes open at most; was: 24 (each with its body), until
// a collection.
func TestAbortedSplicedAnswersClosePipes(t *testing.T) {
	got := make(chan struct{}, 100)
	addr := bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		var n int
		fmt.Sscanf(string(req.URI().Path()), "/%d", &n)
		got <- struct{}{}
		time.Sleep(30 * time.Millisecond) // the client resets meanwhile
		_, err := c.Write(r23Wire("length", seeded(n, 5), -1))
		return err == nil
	})
	px := startProxyOn(t, "timeouts: { client_write: 300ms }\n"+
		fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", addr),
		nil, func(ln net.Listener) net.Listener { return smallSendBuffers{ln} })
	// No collection during the test, as in sluice's steady state.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s0 := r23Serving()
	const resets = 10
	for _, n := range []int{64 << 10, 1 << 20} {
		for range resets {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			<-got
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	// Stalled readers, cut at client_write.
	var stalled []net.Conn
	for _, n := range []int{128 << 10, 1 << 20} {
		for range 2 {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			<-got
			stalled = append(stalled, c)
		}
	}
	const aborted = 2*resets + 4
	// Every answer tried and every connection closed: none served.
	deadline := time.Now().Add(5 * time.Second)
	for r23Serving() > s0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still served 5 s after the aborts", r23Serving()-s0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	open := px.proxy.pipes.open.Load() + px.proxy.bigPipes.open.Load()
	if open > 4 {
		t.Errorf("%d pipes still open (%d small, %d big) after %d spliced answers failed (%d clients reset, %d stalled past client_write) and their connections closed; want them closed with their answers, not at the next garbage collection",
			open, px.proxy.pipes.open.Load(), px.proxy.bigPipes.open.Load(), aborted, 2*resets, len(stalled))
	}
}

// TestResponseLimitAtSpliceEdges: limits.max_response_bytes at
// the splicing thresholds (below, at and past 32 KiB, at and past 1 MiB,
// and far past), with bodies at the limit and one byte over, framed by
// Content-Length, chunked and by the close: 200 with the body intact, or
// 502, and the client's connection stays in step (passing).
func TestResponseLimitAtSpliceEdges(t *testing.T) {
	for _, limit := range []int{31 << 10, 32 << 10, 1 << 20, 1<<20 + 1, 3 << 20} {
		for _, framing := range []string{"length", "chunked", "close"} {
			for _, n := range []int{limit, limit + 1} {
				t.Run(fmt.Sprintf("%s/%d/%d", framing, limit, n), func(t *testing.T) {
					body := seeded(n, limit)
					wire := r23Wire(framing, body, -1)
					addr := bodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
						if string(req.URI().Path()) != "/bad" {
							return bodiesGood(c, req)
						}
						if _, err := c.Write(wire); err != nil {
							return false
						}
						return framing != "close"
					})
					px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_response_bytes: %d }\n", limit))
					c, br := dialProxy(t, px.addr)
					a := bodiesDo(c, br, "GET", "/bad")
					if a.err != nil {
						t.Fatal(a.err)
					}
					switch {
					case n <= limit && (a.status != 200 || sha256.Sum256(a.body) != sha256.Sum256(body)):
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

// r23HashBackend answers each request with "<len> <sha256>" of its body.
func r23HashBackend(t *testing.T) string {
	ln := serveRaw(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(br); err != nil {
				return
			}
			sum := sha256.Sum256(req.Body())
			body := fmt.Sprintf("%d %s", len(req.Body()), hex.EncodeToString(sum[:]))
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestRequestLimitEdges: limits.max_body_bytes of 32 KiB, 1 MiB
// and 4 MiB, request bodies at the limit and one byte over, with a
// Content-Length and chunked, with and without Expect: 100-continue: the
// body reaches the backend byte for byte, or the client gets 413 (at once,
// before 100 Continue, for an announced length over the limit) (passing).
func TestRequestLimitEdges(t *testing.T) {
	addr := r23HashBackend(t)
	for _, limit := range []int{32 << 10, 1 << 20, 4 << 20} {
		px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_body_bytes: %d }\n", limit))
		for _, chunked := range []bool{false, true} {
			for _, expect := range []bool{false, true} {
				for _, n := range []int{limit, limit + 1} {
					t.Run(fmt.Sprintf("%d/chunked=%v/expect=%v/%d", limit, chunked, expect, n), func(t *testing.T) {
						c, br := dialProxy(t, px.addr)
						body := seeded(n, 7)
						var head bytes.Buffer
						head.WriteString("POST /up HTTP/1.1\r\nHost: x\r\n")
						if expect {
							head.WriteString("Expect: 100-continue\r\n")
						}
						rest := body
						if chunked {
							head.WriteString("Transfer-Encoding: chunked\r\n\r\n")
							rest = r21Chunk(body, 30000)
						} else {
							fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", n)
						}
						if _, err := c.Write(head.Bytes()); err != nil {
							t.Fatal(err)
						}
						if expect {
							line, err := br.ReadString('\n')
							if err != nil {
								t.Fatal(err)
							}
							if !chunked && n > limit {
								if !strings.HasPrefix(line, "HTTP/1.1 413 ") {
									t.Fatalf("Expect with a length over the limit: %q, want 413", line)
								}
								return
							}
							if line != "HTTP/1.1 100 Continue\r\n" {
								t.Fatalf("got %q, want 100 Continue", line)
							}
							if l2, _ := br.ReadString('\n'); l2 != "\r\n" {
								t.Fatalf("after 100 Continue: %q", l2)
							}
						}
						go func() { _, _ = c.Write(rest) }()
						a := bodiesRead(br, "POST")
						if a.err != nil {
							t.Fatal(a.err)
						}
						sum := sha256.Sum256(body)
						want := strconv.Itoa(n) + " " + hex.EncodeToString(sum[:])
						if n <= limit && (a.status != 200 || string(a.body) != want) {
							t.Fatalf("status %d body %.80q, want 200 %q", a.status, a.body, want)
						}
						if n > limit && a.status != 413 {
							t.Fatalf("status %d body %.80q, want 413", a.status, a.body)
						}
					})
				}
			}
		}
	}
}

// TestSpliceEdges: bodies around the splicing thresholds (31 KiB,
// 32 KiB ± 1, 128 KiB, 128 KiB + 1, 1 MiB, 1 MiB + 1) written whole or in
// 300-byte segments (more than a pipe has slots), announced longer than
// sent before a close (also in segments), announced to a HEAD, and under
// a head sluice refuses (33 names in Connection): intact, 502, or a
// bodiless 200 with its Content-Length, each followed on the same client
// connection by good answers, and no pipe left open (passing).
func TestSpliceEdges(t *testing.T) {
	sizes := []int{31 << 10, 32<<10 - 1, 32 << 10, 32<<10 + 1, 128 << 10, 128<<10 + 1, 1 << 20, 1<<20 + 1}
	var conn33 strings.Builder
	conn33.WriteString("Connection: a0")
	for i := 1; i < 33; i++ {
		fmt.Fprintf(&conn33, ", a%d", i)
	}
	conn33.WriteString("\r\n")
	addr := bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		var mode string
		var n int
		if _, err := fmt.Sscanf(string(req.URI().Path()), "/%d/%s", &n, &mode); err != nil {
			return bodiesGood(c, req)
		}
		body := seeded(n, n)
		pieces := func(b []byte) error {
			_ = c.(*net.TCPConn).SetNoDelay(true)
			for i := 0; i < len(b); i += 300 {
				if _, err := c.Write(b[i:min(i+300, len(b))]); err != nil {
					return err
				}
			}
			return nil
		}
		switch mode {
		case "one":
			_, _ = c.Write(r23Wire("length", body, -1))
		case "tiny":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			return pieces(body) == nil
		case "short":
			_, _ = c.Write(r23Wire("length", body[:n-1], n))
			return false
		case "shorttiny":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n+1)
			_ = pieces(body)
			return false
		case "head":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
		case "badhdr":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n", conn33.String(), n)
			_, _ = c.Write(body)
		}
		return true
	})
	px := bodiesProxy(t, addr, "timeouts: { response: 10s }\n")
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	for _, mode := range []string{"one", "tiny", "short", "shorttiny", "head", "badhdr"} {
		for _, n := range sizes {
			method := "GET"
			if mode == "head" {
				method = "HEAD"
			}
			a := bodiesDo(c, br, method, fmt.Sprintf("/%d/%s", n, mode))
			if a.err != nil {
				t.Fatalf("%s %d: %v", mode, n, a.err)
			}
			switch mode {
			case "one", "tiny":
				if a.status != 200 || !bytes.Equal(a.body, seeded(n, n)) {
					t.Errorf("%s %d: status %d, %d bytes, intact %v", mode, n, a.status, len(a.body), bytes.Equal(a.body, seeded(n, n)))
				}
			case "short", "shorttiny", "badhdr":
				if a.status != 502 {
					t.Errorf("%s %d: status %d, %d bytes; want 502", mode, n, a.status, len(a.body))
				}
			case "head":
				if a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Length") != strconv.Itoa(n) {
					t.Errorf("%s %d: status %d, %d bytes, Content-Length %q", mode, n, a.status, len(a.body), a.header.Get("Content-Length"))
				}
			}
			bodiesCheckGood(t, c, br)
		}
	}
	c.Close()
	pipesClosed(t, px)
}

// r23StreamBackend: GET /dl/<n> answers big[:n] with a Content-Length
// (/dlc/<n> chunked); a POST is answered "<len> <sha256>" of its body,
// hashed as it streams (the backend holds no body).
func r23StreamBackend(t *testing.T, big []byte) string {
	ln := serveRaw(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReaderSize(c, 64<<10)
		for {
			var h fasthttp.RequestHeader
			if err := h.Read(br); err != nil {
				return
			}
			if string(h.Method()) == "GET" {
				var n int
				if _, err := fmt.Sscanf(string(h.RequestURI()), "/dl/%d", &n); err == nil {
					if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n); err != nil {
						return
					}
					if _, err := c.Write(big[:n]); err != nil {
						return
					}
					continue
				}
				fmt.Sscanf(string(h.RequestURI()), "/dlc/%d", &n)
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
					return
				}
				for i := 0; i < n; i += 64 << 10 {
					j := min(i+64<<10, n)
					fmt.Fprintf(c, "%x\r\n", j-i)
					c.Write(big[i:j])
					io.WriteString(c, "\r\n")
				}
				if _, err := io.WriteString(c, "0\r\n\r\n"); err != nil {
					return
				}
				continue
			}
			hs := sha256.New()
			var k int64
			var err error
			if h.ContentLength() >= 0 {
				k, err = io.CopyN(hs, br, int64(h.ContentLength()))
			}
			if err != nil {
				return
			}
			body := fmt.Sprintf("%d %x", k, hs.Sum(nil))
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// TestConcurrentLargeBodiesMemory: 32 clients downloading and
// 32 uploading at once, bodies of 4 MiB (read into growing buffers;
// chunked ones and chunked uploads too) and 1 MiB (big pipes): every byte
// intact; while
// the 64 connections idle the heap is back near where it began (README,
// Memory and GC: bodies over 128 KiB let go, lent buffers given back),
// no more pipes than the bound were open, and once the clients close,
// the serving goroutines, descriptors and pipes are back to where they
// began (passing).
func TestConcurrentLargeBodiesMemory(t *testing.T) {
	const clients = 32
	big := seeded(4<<20, 1)
	addr := r23StreamBackend(t, big)
	px := bodiesProxy(t, addr, "limits: { max_body_bytes: 8388608 }\ntimeouts: { response: 20s, upstream_idle: 200ms }\n")
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{{"4MiB", 4 << 20, false}, {"4MiBchunked", 4 << 20, true}, {"1MiB", 1 << 20, false}} {
		t.Run(tc.name, func(t *testing.T) {
			want := sha256.Sum256(big[:tc.size])
			wantUp := fmt.Sprintf("%d %x", tc.size, want)
			h0, s0, f0 := r23Heap(), r23Serving(), r23Fds()
			var upload []byte
			if tc.chunked {
				upload = r21Chunk(big[:tc.size], 100<<10)
			}
			var maxPipes int64
			var mu sync.Mutex
			conns := make([]net.Conn, 2*clients)
			errs := make(chan error, 2*clients)
			for i := range conns {
				c, err := net.Dial("tcp", px.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				go func(i int, c net.Conn) {
					br := bufio.NewReaderSize(c, 64<<10)
					for round := range 1 {
						if i%2 == 0 {
							path := "/dl/"
							if tc.chunked {
								path = "/dlc/"
							}
							fmt.Fprintf(c, "GET %s%d HTTP/1.1\r\nHost: x\r\n\r\n", path, tc.size)
							resp, err := http.ReadResponse(br, nil)
							if err != nil {
								errs <- err
								return
							}
							hs := sha256.New()
							n, err := io.Copy(hs, resp.Body)
							resp.Body.Close()
							if err != nil || n != int64(tc.size) || !bytes.Equal(hs.Sum(nil), want[:]) {
								errs <- fmt.Errorf("client %d round %d: download of %d bytes, err %v, intact %v", i, round, n, err, bytes.Equal(hs.Sum(nil), want[:]))
								return
							}
						} else {
							go func() {
								if tc.chunked {
									fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
									_, _ = c.Write(upload)
									return
								}
								fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", tc.size)
								_, _ = c.Write(big[:tc.size])
							}()
							resp, err := http.ReadResponse(br, nil)
							if err != nil {
								errs <- err
								return
							}
							got, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							if string(got) != wantUp {
								errs <- fmt.Errorf("client %d round %d: upload answered %d %q, want %q", i, round, resp.StatusCode, got, wantUp)
								return
							}
						}
						mu.Lock()
						maxPipes = max(maxPipes, px.proxy.pipes.open.Load()+px.proxy.bigPipes.open.Load())
						mu.Unlock()
					}
					errs <- nil
				}(i, c)
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if t.Failed() {
				return
			}
			h1 := r23Heap()
			t.Logf("heap %d KiB before, %d KiB with %d connections idle; at most %d pipes open", h0>>10, h1>>10, len(conns), maxPipes)
			// Per idle connection some 14-30 KiB (more under -race); one
			// large body kept per connection would be 32 × 4 MiB.
			if grown := h1 - h0; grown > 16<<20 {
				t.Errorf("heap grew by %d MiB with %d idle connections that each carried %d KiB bodies", grown>>20, len(conns), tc.size>>10)
			}
			if bound := int64(maxBigPipes) + px.proxy.pipes.max.Load(); maxPipes > bound {
				t.Errorf("%d pipes open, over the bound of %d", maxPipes, bound)
			}
			for _, c := range conns {
				c.Close()
			}
			r23WaitBack(t, px, s0, f0, "the clients closed")
		})
	}
}

// TestAbortsLeaveNothing: clients that go away in the middle of
// downloads (closing or resetting after 20 KiB, or stalling past
// timeouts.client_write) and of uploads (by length or chunked, closed or
// reset halfway, or stalled past timeouts.client_read, which gets 408),
// with bodies of 40 KiB to 4 MiB, leave no goroutine serving, no
// descriptor and no pipe behind once their connections are gone, and the
// proxy serves on (passing).
func TestAbortsLeaveNothing(t *testing.T) {
	big := seeded(4<<20, 1)
	addr := r23StreamBackend(t, big)
	px := bodiesProxy(t, addr, "limits: { max_body_bytes: 8388608 }\ntimeouts: { response: 5s, client_read: 500ms, client_write: 500ms, upstream_idle: 200ms }\n")
	s0, f0 := r23Serving(), r23Fds()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			size := []int{4 << 20, 1 << 20, 100 << 10, 40 << 10}[i/10]
			tc := c.(*net.TCPConn)
			switch i % 5 {
			case 0: // a download, 20 KiB read, closed
				fmt.Fprintf(c, "GET /dl/%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
				_, _ = io.ReadFull(c, make([]byte, 20<<10))
			case 1: // a download, 20 KiB read, reset
				fmt.Fprintf(c, "GET /dl/%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
				_, _ = io.ReadFull(c, make([]byte, 20<<10))
				_ = tc.SetLinger(0)
			case 2: // a download not read, past client_write
				_ = tc.SetReadBuffer(4096)
				fmt.Fprintf(c, "GET /dl/%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
				time.Sleep(1500 * time.Millisecond)
			case 3: // half an upload, closed
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
				_, _ = c.Write(big[:size/2])
			case 4: // half a chunk of a chunked upload, reset
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", size)
				_, _ = c.Write(big[:size/2])
				_ = tc.SetLinger(0)
			}
		}(i)
	}
	wg.Wait()
	// A stalled upload: client_read ends it with 408.
	c, br := dialProxy(t, px.addr)
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 1<<20)
	_, _ = c.Write(big[:1000])
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("a stalled upload: %v, %v; want 408", resp, err)
	}
	c.Close()
	r23WaitBack(t, px, s0, f0, "the aborts")
	cl := testClient(t)
	if code, _, body := get(t, cl, "http://"+px.addr+"/dl/100000", nil); code != 200 || body != string(big[:100000]) {
		t.Fatalf("after the aborts: %d, %d bytes", code, len(body))
	}
}

// r23WaitBack waits up to 5 s, collecting garbage (an aborted answer's
// connection may still hold a lent buffer), until the serving goroutines
// and descriptors are back to s0 and f0 and no pipe is open.
func r23WaitBack(t *testing.T, px *testProxy, s0, f0 int, after string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		s1, f1 := r23Serving(), r23Fds()
		open := px.proxy.pipes.open.Load() + px.proxy.bigPipes.open.Load()
		if s1 <= s0 && f1 <= f0 && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after %s: %d serving goroutines (%d before), %d descriptors (%d before), %d pipes open", after, s1, s0, f1, f0, open)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
