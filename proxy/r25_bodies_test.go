package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Review 25, area "bodies": request and response bodies across sizes and
// framings, end to end through real sockets, with backends that write
// exactly crafted bytes.

// r25BodiesSizes are response body lengths around every size the
// proxy treats apart: the server's write buffer and the lent classes
// (4, 16, 64, 128 KiB), splicing's bounds (32 KiB, 1 MiB) and the small
// pipe's size (128 KiB).
var r25BodiesSizes = []int{0, 1, 4095, 4096, 4097, 16<<10 - 1, 16 << 10, 16<<10 + 1, 32<<10 - 1, 32 << 10,
	32<<10 + 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 128<<10 - 1, 128 << 10, 128<<10 + 1, 1<<20 - 1, 1 << 20, 1<<20 + 1}

// r25BodiesBackend serves requests one by one on each connection,
// under a 30 s deadline: script writes the answer and says whether to
// keep the connection. It counts the requests it read.
func r25BodiesBackend(t *testing.T, script func(c net.Conn, req *fasthttp.Request) bool) (string, *atomic.Int64) {
	t.Helper()
	var seen atomic.Int64
	ln := serveRaw(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(br); err != nil {
				return
			}
			seen.Add(1)
			if !script(c, &req) {
				return
			}
		}
	})
	return ln.Addr().String(), &seen
}

// r25BodiesFramed answers body framed as framing: "length",
// "chunked" (in 7001-byte chunks) or "close" (no framing; the caller then
// closes).
func r25BodiesFramed(framing string, body []byte) []byte {
	var w bytes.Buffer
	switch framing {
	case "length":
		fmt.Fprintf(&w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		w.Write(body)
	case "chunked":
		w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < len(body); i += 7001 {
			j := min(i+7001, len(body))
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

// r25BodiesPatternBackend answers GET /<framing>/<n>/<seed> with
// seeded(n, seed) framed so; HEAD /.../<n>/... with a Content-Length of n
// and no body; /204/... and /304/... with those statuses; anything else
// with "good:<path>".
func r25BodiesPatternBackend(t *testing.T) string {
	addr, _ := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		var framing string
		var n, seed int
		parts := strings.Split(string(req.URI().Path()), "/")
		if len(parts) == 4 {
			framing = parts[1]
			n, _ = strconv.Atoi(parts[2])
			seed, _ = strconv.Atoi(parts[3])
		}
		switch {
		case framing == "204":
			_, err := io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-Seed: "+parts[3]+"\r\n\r\n")
			return err == nil
		case framing == "304":
			_, err := fmt.Fprintf(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: %d\r\nETag: \"%d\"\r\n\r\n", n, seed)
			return err == nil
		case framing != "" && req.Header.IsHead():
			_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			return err == nil
		case framing != "":
			_, err := c.Write(r25BodiesFramed(framing, seeded(n, seed)))
			return err == nil && framing != "close"
		}
		return bodiesGood(c, req)
	})
	return addr
}

// r25BodiesDo sends one request on c and reads its answer.
func r25BodiesDo(c net.Conn, br *bufio.Reader, method, path string) bodiesAnswer {
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", method, path); err != nil {
		return bodiesAnswer{err: err}
	}
	return bodiesRead(br, method)
}

// r25BodiesCheck checks a's answer to the pattern backend's path.
func r25BodiesCheck(a bodiesAnswer, method, framing string, n, seed int) error {
	if a.err != nil {
		return a.err
	}
	switch {
	case framing == "204":
		if a.status != 204 || len(a.body) != 0 || a.header.Get("X-Seed") != strconv.Itoa(seed) {
			return fmt.Errorf("status %d, %d body bytes, X-Seed %q", a.status, len(a.body), a.header.Get("X-Seed"))
		}
	case framing == "304":
		if a.status != 304 || len(a.body) != 0 || a.header.Get("Etag") != fmt.Sprintf("%q", strconv.Itoa(seed)) {
			return fmt.Errorf("status %d, %d body bytes, ETag %q", a.status, len(a.body), a.header.Get("Etag"))
		}
	case method == "HEAD":
		if a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Length") != strconv.Itoa(n) {
			return fmt.Errorf("status %d, %d body bytes, Content-Length %q", a.status, len(a.body), a.header.Get("Content-Length"))
		}
	default:
		want := seeded(n, seed)
		if a.status != 200 || sha256.Sum256(a.body) != sha256.Sum256(want) {
			return fmt.Errorf("status %d, %d body bytes (want %d), intact %v", a.status, len(a.body), n, bytes.Equal(a.body, want))
		}
		if a.header.Get("Content-Length") != strconv.Itoa(n) || a.header.Get("Transfer-Encoding") != "" {
			return fmt.Errorf("framed with Content-Length %q, Transfer-Encoding %q", a.header.Get("Content-Length"), a.header.Get("Transfer-Encoding"))
		}
	}
	return nil
}

// TestBodiesInterleavedSizesKeepAlive: every size around each
// buffer, splice and pipe boundary, framed by length, chunked and by the
// close, with HEAD, 204 and 304 answers mixed in, in a shuffled order on
// each of four kept-alive client connections at once, each answer with a
// pattern of its own: every body arrives byte-exact (sha256), so no
// pooled buffer or pipe passed one answer's bytes into another's.
func TestBodiesInterleavedSizesKeepAlive(t *testing.T) {
	addr := r25BodiesPatternBackend(t)
	px := bodiesProxy(t, addr, "timeouts: { response: 20s }\n")
	type one struct {
		method, framing string
		n               int
	}
	var all []one
	for _, n := range r25BodiesSizes {
		for _, f := range []string{"length", "length", "chunked", "close"} {
			all = append(all, one{"GET", f, n})
		}
		all = append(all, one{"HEAD", "length", n})
	}
	all = append(all, one{"GET", "204", 0}, one{"GET", "304", 40000}, one{"GET", "304", 5000}, one{"GET", "204", 0})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			rng := rand.New(rand.NewPCG(uint64(w), 25))
			order := rng.Perm(len(all))
			for i, k := range order {
				o := all[k]
				seed := w*100000 + i
				a := r25BodiesDo(c, br, o.method, fmt.Sprintf("/%s/%d/%d", o.framing, o.n, seed))
				if err := r25BodiesCheck(a, o.method, o.framing, o.n, seed); err != nil {
					errs <- fmt.Errorf("conn %d request %d (%s %s %d): %w", w, i, o.method, o.framing, o.n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	pipesClosed(t, px)
}

// TestBodiesPipelinedMixedSizes: GETs of every boundary size,
// lent, spliced and past 1 MiB, with HEADs and a 304 between, pipelined
// in one write: each answer comes in order and whole.
func TestBodiesPipelinedMixedSizes(t *testing.T) {
	addr := r25BodiesPatternBackend(t)
	px := bodiesProxy(t, addr, "timeouts: { response: 20s }\n")
	type one struct {
		method, framing string
		n               int
	}
	var list []one
	for i, n := range r25BodiesSizes {
		list = append(list, one{"GET", []string{"length", "chunked", "length"}[i%3], n})
		if i%4 == 1 {
			list = append(list, one{"HEAD", "length", n})
		}
		if i%5 == 2 {
			list = append(list, one{"GET", "304", n})
		}
	}
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	var wire bytes.Buffer
	for i, o := range list {
		fmt.Fprintf(&wire, "%s /%s/%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", o.method, o.framing, o.n, 7000+i)
	}
	go func() { _, _ = c.Write(wire.Bytes()) }()
	for i, o := range list {
		a := bodiesRead(br, o.method)
		if err := r25BodiesCheck(a, o.method, o.framing, o.n, 7000+i); err != nil {
			t.Fatalf("answer %d (%s %s %d): %v", i, o.method, o.framing, o.n, err)
		}
	}
	bodiesCheckGood(t, c, br)
}

// r25BodiesTail is what an overlong backend sends past the body
// it announced: a whole response of its own, which must never reach a
// client as the answer to another request.
const r25BodiesTail = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!"

// TestBodiesOverlongBackend: a backend that sends more bytes than
// its Content-Length, on each path (lent buffer, spliced, long body), the
// extra bytes in the same write or a little later: the client gets the
// announced body, byte-exact, and the next requests on the same client
// connection get their own answers, never the extra bytes (README: bytes
// past an answer put the upstream connection out of step; it is not
// reused, or the idle check finds them).
func TestBodiesOverlongBackend(t *testing.T) {
	for _, late := range []bool{false, true} {
		for _, n := range []int{100, 4096, 16 << 10, 32<<10 - 1, 32 << 10, 64 << 10, 128 << 10, 128<<10 + 1, 1 << 20, 1<<20 + 1} {
			t.Run(fmt.Sprintf("late=%v/%d", late, n), func(t *testing.T) {
				body := seeded(n, n+3)
				addr, _ := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
					if string(req.URI().Path()) != "/over" {
						return bodiesGood(c, req)
					}
					wire := r25BodiesFramed("length", body)
					if !late {
						wire = append(wire, r25BodiesTail...)
						_, err := c.Write(wire)
						return err == nil
					}
					if _, err := c.Write(wire); err != nil {
						return false
					}
					time.Sleep(30 * time.Millisecond)
					_, err := io.WriteString(c, r25BodiesTail)
					return err == nil
				})
				px := bodiesProxy(t, addr, "")
				c, br := dialProxy(t, px.addr)
				_ = c.SetDeadline(time.Now().Add(8 * time.Second))
				a := r25BodiesDo(c, br, "GET", "/over")
				if a.err != nil || a.status != 200 || !bytes.Equal(a.body, body) {
					t.Fatalf("overlong answer: status %d, %d body bytes (want %d), err %v", a.status, len(a.body), n, a.err)
				}
				time.Sleep(100 * time.Millisecond) // the late bytes have come
				for i := range 3 {
					p := fmt.Sprintf("/next%d", i)
					a := r25BodiesDo(c, br, "GET", p)
					if a.err != nil || a.status != 200 || string(a.body) != "good:"+p {
						t.Fatalf("request after the overlong answer, %s: status %d body %.60q err %v", p, a.status, a.body, a.err)
					}
				}
			})
		}
	}
}

// TestBodiesShortBodyKeptOpen: a backend that sends fewer bytes
// than its Content-Length and keeps the connection open: the client gets
// 504 at timeouts.response (never the short body as a whole answer), on
// the buffered, spliced and long paths, and its connection stays in step.
func TestBodiesShortBodyKeptOpen(t *testing.T) {
	for _, n := range []int{4096, 32 << 10, 128<<10 + 1, 1<<20 + 1} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			addr, _ := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
				if string(req.URI().Path()) != "/short" {
					return bodiesGood(c, req)
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				_, _ = c.Write(seeded(n-1, 1))
				_, _ = c.Read(make([]byte, 1)) // held open until sluice closes it
				return false
			})
			px := bodiesProxy(t, addr, "timeouts: { response: 400ms }\n")
			c, br := dialProxy(t, px.addr)
			a := r25BodiesDo(c, br, "GET", "/short")
			if a.err != nil || a.status != 504 {
				t.Fatalf("short body: status %d, %d body bytes, err %v; want 504", a.status, len(a.body), a.err)
			}
			bodiesCheckGood(t, c, br)
		})
	}
}

// r25BodiesSlowConn reads slowly: at most 1000 bytes a read, with a
// pause every 16 reads.
type r25BodiesSlowConn struct {
	net.Conn
	reads int
}

func (s *r25BodiesSlowConn) Read(p []byte) (int, error) {
	s.reads++
	if s.reads%16 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.Conn.Read(p[:min(len(p), 1000)])
}

// TestBodiesSlowClientSpliced: a client with a small receive
// buffer that reads spliced answers (32 KiB to 1 MiB) slowly, one after
// another on one connection, gets each byte-exact, while another client
// fetches answers of the same sizes at speed.
func TestBodiesSlowClientSpliced(t *testing.T) {
	addr := r25BodiesPatternBackend(t)
	px := bodiesProxy(t, addr, "timeouts: { response: 20s, client_write: 20s }\n")
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(16 << 10)
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second))
	slow := &r25BodiesSlowConn{Conn: raw}
	br := bufio.NewReaderSize(slow, 1024)
	sizes := []int{32 << 10, 64 << 10, 128<<10 - 1, 128<<10 + 1, 32<<10 + 1}
	stop := make(chan struct{})
	fast := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			fast <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		fbr := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-stop:
				fast <- nil
				return
			default:
			}
			n := sizes[i%len(sizes)]
			a := r25BodiesDo(c, fbr, "GET", fmt.Sprintf("/length/%d/%d", n, 50000+i))
			if err := r25BodiesCheck(a, "GET", "length", n, 50000+i); err != nil {
				fast <- fmt.Errorf("fast client, request %d (%d bytes): %w", i, n, err)
				return
			}
		}
	}()
	for i, n := range sizes {
		a := r25BodiesDo(raw, br, "GET", fmt.Sprintf("/length/%d/%d", n, 900+i))
		if err := r25BodiesCheck(a, "GET", "length", n, 900+i); err != nil {
			t.Errorf("slow client, request %d (%d bytes): %v", i, n, err)
			break
		}
	}
	close(stop)
	if err := <-fast; err != nil {
		t.Error(err)
	}
	// (The slow client's connection is closed first: an idle one holds
	// its last pipe, TestBodiesIdleConnsHoldNoPipes.)
	raw.Close()
	pipesClosed(t, px)
}

// r25BodiesHash is "<len> <sha256>" of b.
func r25BodiesHash(b []byte) string {
	sum := sha256.Sum256(b)
	return strconv.Itoa(len(b)) + " " + hex.EncodeToString(sum[:])
}

// TestBodiesRequestLimit: request bodies at
// limits.max_body_bytes and one byte over, with a Content-Length and
// chunked, for limits around the buffer sizes: at the limit the backend
// gets the body byte-exact, one over the client gets 413 and the backend
// never sees the request.
func TestBodiesRequestLimitEachFraming(t *testing.T) {
	var mu sync.Mutex
	var got []string
	addr, seen := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		if strings.HasPrefix(string(req.URI().Path()), "/next") {
			return bodiesGood(c, req)
		}
		h := r25BodiesHash(req.Body())
		mu.Lock()
		got = append(got, h)
		mu.Unlock()
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(h), h)
		return err == nil
	})
	for _, limit := range []int{1023, 1024, 4096, 16 << 10, 64<<10 + 1, 128 << 10} {
		px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_body_bytes: %d }\n", limit))
		for _, chunked := range []bool{false, true} {
			for _, n := range []int{limit - 1, limit, limit + 1} {
				t.Run(fmt.Sprintf("%d/chunked=%v/%d", limit, chunked, n), func(t *testing.T) {
					c, br := dialProxy(t, px.addr)
					body := seeded(n, limit+n)
					var w bytes.Buffer
					w.WriteString("POST /up HTTP/1.1\r\nHost: x\r\n")
					if chunked {
						w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
						w.Write(r21Chunk(body, 3000))
					} else {
						fmt.Fprintf(&w, "Content-Length: %d\r\n\r\n", n)
						w.Write(body)
					}
					before := seen.Load()
					go func() { _, _ = c.Write(w.Bytes()) }()
					a := bodiesRead(br, "POST")
					if a.err != nil {
						t.Fatal(a.err)
					}
					if n <= limit {
						if a.status != 200 || string(a.body) != r25BodiesHash(body) {
							t.Fatalf("status %d body %.80q, want 200 %q", a.status, a.body, r25BodiesHash(body))
						}
						// The connection goes on.
						bodiesCheckGood(t, c, br)
						return
					}
					if a.status != 413 {
						t.Fatalf("status %d body %.80q, want 413", a.status, a.body)
					}
					if s := seen.Load(); s != before {
						t.Fatalf("backend saw %d requests for a body over the limit", s-before)
					}
				})
			}
		}
	}
}

// TestBodiesPipelinedUploads: POSTs with bodies around the 1 KiB
// at which a request body goes out gathered with its head, and around the
// buffer sizes, some chunked, pipelined in one write: the backend gets
// each body byte-exact, and the answers come in order.
func TestBodiesPipelinedUploads(t *testing.T) {
	addr, _ := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
		if strings.HasPrefix(string(req.URI().Path()), "/next") {
			return bodiesGood(c, req)
		}
		h := r25BodiesHash(req.Body())
		_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Path: %s\r\nContent-Length: %d\r\n\r\n%s", req.URI().Path(), len(h), h)
		return err == nil
	})
	px := bodiesProxy(t, addr, "")
	sizes := []int{0, 1, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 8193, 16 << 10, 64<<10 + 1, 1023, 1024, 200000, 3}
	var wire bytes.Buffer
	var bodies [][]byte
	for i, n := range sizes {
		body := seeded(n, 300+i)
		bodies = append(bodies, body)
		if i%3 == 2 {
			fmt.Fprintf(&wire, "POST /u%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", i)
			wire.Write(r21Chunk(body, 1500))
		} else {
			fmt.Fprintf(&wire, "POST /u%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", i, n)
			wire.Write(body)
		}
	}
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(8 * time.Second))
	go func() { _, _ = c.Write(wire.Bytes()) }()
	for i, body := range bodies {
		a := bodiesRead(br, "POST")
		if a.err != nil {
			t.Fatalf("answer %d: %v", i, a.err)
		}
		if a.status != 200 || a.header.Get("X-Path") != fmt.Sprintf("/u%d", i) || string(a.body) != r25BodiesHash(body) {
			t.Fatalf("answer %d (%d bytes): status %d X-Path %q body %q, want %q", i, len(body), a.status, a.header.Get("X-Path"), a.body, r25BodiesHash(body))
		}
	}
	bodiesCheckGood(t, c, br)
}

// TestBodiesResponseLimitEachPath: limits.max_response_bytes at
// sizes each path reads differently (lent class edges, splicing's edges,
// past 1 MiB), bodies one under, at, and one over: 200 byte-exact or 502,
// the backend saw the request once (a too-long answer is not retried),
// and the client's connection stays in step.
func TestBodiesResponseLimitEachPath(t *testing.T) {
	for _, limit := range []int{4096, 16 << 10, 32<<10 - 1, 64 << 10, 128 << 10, 1 << 20} {
		addr, seen := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
			var n int
			if _, err := fmt.Sscanf(string(req.URI().Path()), "/len/%d", &n); err != nil {
				return bodiesGood(c, req)
			}
			_, err := c.Write(r25BodiesFramed("length", seeded(n, n)))
			return err == nil
		})
		px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_response_bytes: %d }\n", limit))
		for _, n := range []int{limit - 1, limit, limit + 1} {
			t.Run(fmt.Sprintf("%d/%d", limit, n), func(t *testing.T) {
				c, br := dialProxy(t, px.addr)
				before := seen.Load()
				a := r25BodiesDo(c, br, "GET", fmt.Sprintf("/len/%d", n))
				if a.err != nil {
					t.Fatal(a.err)
				}
				if n <= limit && (a.status != 200 || !bytes.Equal(a.body, seeded(n, n))) {
					t.Fatalf("status %d, %d body bytes; want 200 with %d", a.status, len(a.body), n)
				}
				if n > limit && a.status != 502 {
					t.Fatalf("status %d, %d body bytes; want 502", a.status, len(a.body))
				}
				if s := seen.Load() - before; s != 1 {
					t.Fatalf("backend saw the request %d times, want 1", s)
				}
				bodiesCheckGood(t, c, br)
			})
		}
	}
}

// r25BodiesIdleFetch opens a connection, fetches one answer of n
// bytes (a Content-Length body) on it, reads it whole, and leaves the
// connection open and idle (closed when the test ends). Two collections
// follow, which empty the pools (sync.Pool keeps what it holds for one
// collection more), as a busy proxy's collector would between answers.
func r25BodiesIdleFetch(t *testing.T, addr string, n, seed int) {
	t.Helper()
	c, br := dialProxy(t, addr)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	a := r25BodiesDo(c, br, "GET", fmt.Sprintf("/length/%d/%d", n, seed))
	if err := r25BodiesCheck(a, "GET", "length", n, seed); err != nil {
		t.Fatalf("fetch %d: %v", seed, err)
	}
	runtime.GC()
	runtime.GC()
}

// TestBodiesIdleConnsHoldNoPipes: keep-alive connections that
// each got one spliced answer (64 KiB, a small pipe) and now idle hold no
// pipe (README: "A pipe goes back to the pool as soon as its answer is
// written whole"; step in netconn: "an idle connection keeps none"), so
// the pipes close once the pool lets them go, as they do after answers
// over 128 KiB, and the pool's bound is left to answers in flight.
func TestBodiesIdleConnsHoldNoPipes(t *testing.T) {
	for _, n := range []int{64 << 10, 200 << 10} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			addr := r25BodiesPatternBackend(t)
			px := bodiesProxy(t, addr, "")
			const conns = 8
			for i := range conns {
				r25BodiesIdleFetch(t, px.addr, n, i)
			}
			deadline := time.Now().Add(3 * time.Second)
			open := func() int64 { return px.proxy.pipes.open.Load() + px.proxy.bigPipes.open.Load() }
			for open() > 0 && time.Now().Before(deadline) {
				runtime.GC()
				time.Sleep(20 * time.Millisecond)
			}
			if got := open(); got > 0 {
				t.Errorf("%d idle connections that each got a spliced answer of %d bytes keep %d pipes open (%d descriptors); want 0",
					conns, n, got, 2*got)
			}
		})
	}
}

// TestBodiesIdleConnsHoldNoPipesAtBound: with the pool's bound at
// 4 pipes, four idle connections whose last answers were spliced leave
// none for the next answer, which is then read into memory instead of
// spliced: the bound (README: "so that bodies never take the descriptors
// connections need") is taken by connections that hold no body.
func TestBodiesIdleConnsHoldNoPipesAtBound(t *testing.T) {
	addr := r25BodiesPatternBackend(t)
	px := bodiesProxy(t, addr, "")
	px.proxy.pipes.max.Store(4)
	for i := range 4 {
		r25BodiesIdleFetch(t, px.addr, 64<<10, i)
	}
	// Let the collector close what nothing holds.
	for range 10 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	p := px.proxy.pipes.get()
	if p == nil {
		t.Fatalf("no pipe for the next answer: the bound of 4 is taken by %d pipes of 4 idle connections", px.proxy.pipes.open.Load())
	}
	p.GiveBack()
}

// TestBodiesIdleConnsPinNoLentBuffers: 64 keep-alive connections
// that each got one lent answer (30 KiB, a 64 KiB buffer) and now idle
// hold no body buffer (bodies.go: "an idle connection holds no body"),
// when the collector runs between answers as it does on a busy proxy:
// the heap grows no more than for as many that fetched 1 byte (with the
// slack TestIdleConnectionsKeepNoLentBodies allows: half the bodies).
func TestBodiesIdleConnsPinNoLentBuffers(t *testing.T) {
	const (
		conns = 64
		size  = 30 << 10
	)
	addr := r25BodiesPatternBackend(t)
	px := bodiesProxy(t, addr, "")
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	before := heap()
	for i := range conns {
		r25BodiesIdleFetch(t, px.addr, 1, i)
	}
	small := heap()
	for i := range conns {
		r25BodiesIdleFetch(t, px.addr, size, i)
	}
	large := heap()
	extra, limit := (large-small)-(small-before), int64(conns*(64<<10)/2)
	t.Logf("heap grew %d KiB for %d idle connections that fetched 1 byte, %d KiB for as many that fetched %d KiB",
		(small-before)>>10, conns, (large-small)>>10, size>>10)
	if extra > limit {
		t.Errorf("%d idle connections that each fetched %d KiB hold %d KiB more than as many that fetched 1 byte; want under %d KiB",
			conns, size>>10, extra>>10, limit>>10)
	}
}

// TestBodiesBodilessAnswersWithBodyBytes: a backend that sends a
// body after an answer that has none (a 204 or 304 with a Content-Length,
// a HEAD answered with its body), at lent and spliced sizes: the client
// gets the answer without a body, and the next requests on its
// connection get their own answers, never those bytes.
func TestBodiesBodilessAnswersWithBodyBytes(t *testing.T) {
	for _, status := range []string{"204 No Content", "304 Not Modified", "HEAD"} {
		for _, n := range []int{100, 4097, 40000, 200000} {
			t.Run(fmt.Sprintf("%s/%d", status, n), func(t *testing.T) {
				addr, _ := r25BodiesBackend(t, func(c net.Conn, req *fasthttp.Request) bool {
					if string(req.URI().Path()) != "/none" {
						return bodiesGood(c, req)
					}
					line := "200 OK"
					if status != "HEAD" {
						line = status
					}
					wire := fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n", line, n)
					wire = append(wire, r25BodiesTail...)
					wire = append(wire, seeded(n, 5)[len(r25BodiesTail):]...)
					_, err := c.Write(wire)
					return err == nil
				})
				px := bodiesProxy(t, addr, "")
				c, br := dialProxy(t, px.addr)
				method := "GET"
				if status == "HEAD" {
					method = "HEAD"
				}
				a := r25BodiesDo(c, br, method, "/none")
				if a.err != nil || len(a.body) != 0 || a.status != map[string]int{"204 No Content": 204, "304 Not Modified": 304, "HEAD": 200}[status] {
					t.Fatalf("status %d, %d body bytes, err %v", a.status, len(a.body), a.err)
				}
				time.Sleep(50 * time.Millisecond)
				bodiesCheckGood(t, c, br)
			})
		}
	}
}
