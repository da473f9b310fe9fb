package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// seeded is n bytes that depend on seed, so that a body that took
// another's bytes (a lent buffer given back too soon) shows.
func seeded(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((seed*131 + i*7 + i/251) % 253)
	}
	return b
}

// patternBackend answers /n/seed with seeded(n, seed) and a
// Content-Length; /chunked/n/seed with the same body chunked.
func patternBackend(t *testing.T) *testBackend {
	return startBackend(t, "pattern", func(w http.ResponseWriter, r *http.Request) {
		var n, seed int
		path, chunked := strings.CutPrefix(r.URL.Path, "/chunked")
		if _, err := fmt.Sscanf(path, "/%d/%d", &n, &seed); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body := seeded(n, seed)
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		_, _ = w.Write(body)
		if chunked {
			w.(http.Flusher).Flush()
		}
	})
}

// smallSendBuffers gives each accepted connection a small send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if nc, ok := c.(*netconn.Conn); ok {
		_ = nc.Conn.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

// bodySizes cross each lent buffer class's edges and go past the largest.
var bodySizes = []int{0, 1, 1000, 4095, 4096, 4097, 16 << 10, 16<<10 + 1, 64 << 10, 70000, keptBodyLimit, keptBodyLimit + 1, 300 << 10}

// TestLentBodies: response bodies of every size, lent buffer or not,
// arrive whole and unmixed, one at a time, many at once over kept-alive
// connections, pipelined, and to a client that reads slowly while others
// reuse the buffers.
func TestLentBodies(t *testing.T) {
	b := patternBackend(t)
	// Small send buffers on the proxy's client connections, so that a
	// long answer's write waits for the client to read (slow reader).
	px := startProxyOn(t, poolYAML("round_robin", []*testBackend{b}, nil), nil, func(ln net.Listener) net.Listener {
		return smallSendBuffers{ln}
	})
	base := "http://" + px.addr

	t.Run("each size", func(t *testing.T) {
		c := testClient(t)
		for _, n := range bodySizes {
			for _, prefix := range []string{"", "/chunked"} {
				url := fmt.Sprintf("%s%s/%d/%d", base, prefix, n, n)
				code, _, body := get(t, c, url, nil)
				if code != http.StatusOK || !bytes.Equal([]byte(body), seeded(n, n)) {
					t.Fatalf("GET %s: %d, %d bytes, body intact %v", url, code, len(body), bytes.Equal([]byte(body), seeded(n, n)))
				}
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		c := testClient(t)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				for i := range 20 {
					n, seed := bodySizes[rng.IntN(len(bodySizes))], w*1000+i
					resp, err := c.Get(fmt.Sprintf("%s/%d/%d", base, n, seed))
					if err != nil {
						errs <- err
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || !bytes.Equal(body, seeded(n, seed)) {
						errs <- fmt.Errorf("body of %d bytes, seed %d: got %d bytes (%v), intact %v", n, seed, len(body), err, bytes.Equal(body, seeded(n, seed)))
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
	})

	t.Run("pipelined", func(t *testing.T) {
		conn, r := dialProxy(t, px.addr)
		sizes := []int{70000, 1000, 0, 16 << 10, 70000, 4096}
		var reqs bytes.Buffer
		for i, n := range sizes {
			fmt.Fprintf(&reqs, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", n, 500+i)
		}
		if _, err := conn.Write(reqs.Bytes()); err != nil {
			t.Fatal(err)
		}
		for i, n := range sizes {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, seeded(n, 500+i)) {
				t.Fatalf("response %d (%d bytes): got %d bytes (%v), intact %v", i, n, len(body), err, bytes.Equal(body, seeded(n, 500+i)))
			}
		}
	})

	t.Run("slow reader", func(t *testing.T) {
		// A small receive buffer and no reads for a while: the answer's
		// write waits for room with its buffer lent, while other
		// connections' answers take buffers from the same pool.
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		const n, seed = 120 << 10, 7
		if _, err := fmt.Fprintf(conn, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", n, seed); err != nil {
			t.Fatal(err)
		}
		c := testClient(t)
		for i := range 12 {
			m := []int{64 << 10, 70000, 120 << 10}[i%3]
			if code, _, body := get(t, c, fmt.Sprintf("%s/%d/%d", base, m, 9000+i), nil); code != http.StatusOK || !bytes.Equal([]byte(body), seeded(m, 9000+i)) {
				t.Fatalf("other request %d: %d, intact %v", i, code, bytes.Equal([]byte(body), seeded(m, 9000+i)))
			}
		}
		_ = conn.(*net.TCPConn).SetReadBuffer(1 << 20) // now read at speed
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(body, seeded(n, seed)) {
			t.Fatalf("slow reader's body: %d bytes (%v), intact %v", len(body), err, bytes.Equal(body, seeded(n, seed)))
		}
	})

	t.Run("buffer given back", func(t *testing.T) {
		// The body went into a pooled buffer, which the connection gave
		// back once the answer was passed on: a buffer of its class with
		// its bytes in is found in the pool. (The race detector drops
		// some of what is put in a sync.Pool, hence the tries.)
		c := testClient(t)
		const n = spliceMinBody - 1 // longer ones are spliced (splice.go)
		for try := range 50 {
			seed := 100 + try
			if code, _, body := get(t, c, fmt.Sprintf("%s/%d/%d", base, n, seed), nil); code != http.StatusOK || len(body) != n {
				t.Fatalf("GET: %d, %d bytes", code, len(body))
			}
			buf := px.proxy.bodies.get(n)
			found := bytes.Equal(buf.b[:n], seeded(n, seed))
			buf.GiveBack()
			if found {
				return
			}
		}
		t.Fatal("no pooled buffer held a body after 50 answers")
	})
}

// TestReadLentBody: readResponse with a loan reads what it reads without
// one, a Content-Length body into a buffer the loan holds, other bodies
// as before; a failed read holds nothing.
func TestReadLentBody(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		lent    bool // the body is in the loan's buffer
		wantErr bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, false},
		{"after 103", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"empty", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false},
		{"204 with a length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, false},
		{"304 with a length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, false},
		{"both lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, false},
		{"to the close", "HTTP/1.1 200 OK\r\n\r\nhello", false, false},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false, true},
		{"cut at the head", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false, true},
		{"over the limit", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nx", false, true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: x5\r\n\r\nhello", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plain, lent fasthttp.Response
			_, plainErr := readResponse(&plain, bufio.NewReader(bytes.NewReader([]byte(tt.raw))), 1<<16, nil, nil)
			loan := &bodyLoan{pools: &bodyPools{}}
			_, err := readResponse(&lent, bufio.NewReader(bytes.NewReader([]byte(tt.raw))), 1<<16, nil, loan)
			if (err != nil) != tt.wantErr || (plainErr != nil) != tt.wantErr {
				t.Fatalf("errors: with a loan %v, without %v; want an error: %v", err, plainErr, tt.wantErr)
			}
			if (loan.buf != nil) != tt.lent {
				t.Fatalf("loan holds a buffer: %v, want %v", loan.buf != nil, tt.lent)
			}
			if err != nil {
				return
			}
			if lent.StatusCode() != plain.StatusCode() || !bytes.Equal(lent.Body(), plain.Body()) ||
				lent.Header.ContentLength() != plain.Header.ContentLength() {
				t.Fatalf("with a loan %d %q (length %d), without %d %q (length %d)",
					lent.StatusCode(), lent.Body(), lent.Header.ContentLength(), plain.StatusCode(), plain.Body(), plain.Header.ContentLength())
			}
			if tt.lent && &lent.Body()[0] != &loan.buf.b[0] {
				t.Fatal("the body is not the loan's buffer")
			}
		})
	}
}

// TestIdleConnectionsKeepNoLentBodies: connections that each fetched a
// body of up to 128 KiB with a Content-Length keep none of it once idle:
// the bodies were lent and given back, not kept per connection as
// fasthttp keeps the bodies it reads (up to keptBodyLimit). The heap's
// growth is compared with that of as many idle connections that fetched
// one byte each, which cost what a connection costs (more under the race
// detector).
func TestIdleConnectionsKeepNoLentBodies(t *testing.T) {
	const (
		conns = 64
		size  = 120 << 10
	)
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	fetch := func(n int) {
		for i := range conns {
			c, r := dialProxy(t, px.addr)
			if _, err := fmt.Fprintf(c, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", n, i); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || got != int64(n) {
				t.Fatalf("connection %d: status %d, %d bytes", i, resp.StatusCode, got)
			}
		}
	}
	before := heap()
	fetch(1)
	small := heap()
	fetch(size)
	large := heap()
	t.Logf("heap grew by %d KiB for %d idle connections that fetched 1 byte each, %d KiB for as many that fetched %d KiB",
		(small-before)>>10, conns, (large-small)>>10, size>>10)
	// Kept per connection, the bodies alone would be 7.5 MiB; half that
	// leaves room for the race detector, which keeps some 2.5 MiB more.
	if extra, limit := (large-small)-(small-before), int64(conns*size/2); extra > limit {
		t.Errorf("%d idle connections that each fetched %d KiB hold %d KiB more than as many that fetched 1 byte; want under %d KiB",
			conns, size>>10, extra>>10, limit>>10)
	}
}
