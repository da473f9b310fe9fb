package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestBigPipeSmallPieces: a backend that writes bodies of
// 128 KiB+1 to 1 MiB in 1000-byte pieces runs the big pipe out of slots
// (256 of them); the body then goes to a buffer (unsplice, no lent class
// holds it) whole, several at once, and no pipe is left open.
func TestBigPipeSmallPieces(t *testing.T) {
	ln := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var n, seed int
			fmt.Sscanf(req.URL.Path, "/%d/%d", &n, &seed)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			body := seeded(n, seed)
			for i := 0; i < n; i += 1000 {
				if _, err := c.Write(body[i:min(i+1000, n)]); err != nil {
					return
				}
				if i%(50<<10) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}
	})
	px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	sizes := []int{pipeSize + 1, 600 << 10, bigPipeSize}
	c := testClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for w := range 3 {
		wg.Go(func() {
			n := sizes[w]
			for i := range 2 {
				seed := w*10 + i
				code, _, body := get(t, c, fmt.Sprintf("http://%s/%d/%d", px.addr, n, seed), nil)
				if code != 200 || !bytes.Equal([]byte(body), seeded(n, seed)) {
					errs <- fmt.Errorf("%d bytes, seed %d: status %d, %d bytes, intact %v", n, seed, code, len(body), bytes.Equal([]byte(body), seeded(n, seed)))
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
	c.CloseIdleConnections()
	pipesClosed(t, px)
}

// TestBigPipeResponseLimit: limits.max_response_bytes below
// 1 MiB still refuses a longer spliced-size body with 502 (README:
// "larger gets 502"), and a body at the limit arrives whole.
func TestBigPipeResponseLimit(t *testing.T) {
	b := patternBackend(t)
	const limit = 600000
	y := strings.Replace(poolYAML("round_robin", []*testBackend{b}, nil), "routes:", fmt.Sprintf("limits: { max_response_bytes: %d }\nroutes:", limit), 1)
	px := startProxy(t, y)
	c := testClient(t)
	for i, tt := range []struct{ n, code int }{
		{limit, 200}, {limit + 1, 502}, {bigPipeSize, 502}, {pipeSize + 1, 200}, {bigPipeSize + 1, 502},
	} {
		code, _, body := get(t, c, fmt.Sprintf("http://%s/%d/%d", px.addr, tt.n, i), nil)
		if code != tt.code || tt.code == 200 && !bytes.Equal([]byte(body), seeded(tt.n, i)) {
			t.Fatalf("%d bytes with max_response_bytes %d: status %d, %d bytes; want %d", tt.n, limit, code, len(body), tt.code)
		}
	}
	c.CloseIdleConnections()
	pipesClosed(t, px)
}

// TestBigPipeCutThenRetry: a GET whose first attempt's big body
// breaks off (closed or reset at 600 KiB of 1 MiB) is retried on the
// other backend, whose big body arrives whole; a stalled one gets 504;
// no pipe is left open.
func TestBigPipeCutThenRetry(t *testing.T) {
	const n = bigPipeSize
	for _, how := range []string{"close", "reset", "stall"} {
		t.Run(how, func(t *testing.T) {
			var cuts atomic.Int64
			cut := serveRaw(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				cuts.Add(1)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Backend: cut\r\nContent-Length: %d\r\n\r\n", n)
				_, _ = c.Write(seeded(600<<10, 9))
				switch how {
				case "reset":
					time.Sleep(50 * time.Millisecond)
					_ = c.(*net.TCPConn).SetLinger(0)
				case "stall":
					time.Sleep(time.Second)
				default:
					time.Sleep(50 * time.Millisecond)
				}
			})
			good := patternBackend(t)
			y := fmt.Sprintf("retries: { attempts: 2 }\nroutes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: %s }\n      - { address: %s }\n",
				cut.Addr(), good.addr())
			if how == "stall" {
				y = "timeouts: { response: 300ms }\n" + y
			}
			px := startProxy(t, y)
			c := testClient(t)
			for i := range 2 {
				code, be, body := get(t, c, fmt.Sprintf("http://%s/%d/%d", px.addr, n, i), nil)
				if how == "stall" {
					if code != 200 && code != http.StatusGatewayTimeout {
						t.Fatalf("GET %d: status %d, want 200 or 504", i, code)
					}
					if code == 200 && (be != "pattern" || !bytes.Equal([]byte(body), seeded(n, i))) {
						t.Fatalf("GET %d: 200 from %q, %d bytes", i, be, len(body))
					}
					continue
				}
				if code != 200 || be != "pattern" || !bytes.Equal([]byte(body), seeded(n, i)) {
					t.Fatalf("GET %d: %d from %q, %d bytes, intact %v", i, code, be, len(body), bytes.Equal([]byte(body), seeded(n, i)))
				}
			}
			if cuts.Load() == 0 {
				t.Fatal("no request reached the backend that cuts its bodies")
			}
			c.CloseIdleConnections()
			pipesClosed(t, px)
		})
	}
}

// TestBigPipeSlowSteadyReader: client_write bounds a wait with
// no byte taken, not the whole of a spliced 1 MiB answer to a client
// that reads steadily but slowly (README, client_write; nginx's
// send_timeout).
func TestBigPipeSlowSteadyReader(t *testing.T) {
	b := patternBackend(t)
	y := strings.Replace(poolYAML("round_robin", []*testBackend{b}, nil), "routes:", "timeouts: { client_write: 300ms }\nroutes:", 1)
	px := startProxy(t, y)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
	const n = bigPipeSize
	fmt.Fprintf(conn, "GET /%d/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", n)
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	start := time.Now()
	for {
		k, err := conn.Read(buf)
		got.Write(buf[:k])
		if err != nil {
			break
		}
		time.Sleep(15 * time.Millisecond)
	}
	if !bytes.HasSuffix(got.Bytes(), seeded(n, 3)) || !bytes.HasPrefix(got.Bytes(), []byte("HTTP/1.1 200")) {
		t.Fatalf("slow steady reader got %d bytes in %v, intact %v (want a whole 1 MiB answer)", got.Len(), time.Since(start), bytes.HasSuffix(got.Bytes(), seeded(n, 3)))
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Logf("the read took only %v: not slower than client_write", time.Since(start))
	}
	pipesClosed(t, px)
}

// TestBigPipeClosingAnswersReuse: big spliced answers on
// connections that close after them give their pipe back once written
// whole (README: "A pipe goes back to the pool as soon as its answer is
// written whole"), so one after another they reuse one or two big pipes.
func TestBigPipeClosingAnswersReuse(t *testing.T) {
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const n = 200 << 10
	for i := range 8 {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /%d/%d HTTP/1.0\r\nHost: x\r\n\r\n", n, i)
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || !bytes.HasSuffix(got, seeded(n, i)) {
			t.Fatalf("answer %d: %d bytes, %v", i, len(got), err)
		}
	}
	if open := px.proxy.bigPipes.open.Load(); open > 5 || open == 0 {
		t.Fatalf("%d big pipes open after 8 big spliced answers on closing connections, one after another (want 1 or 2, reused)", open)
	}
}

// TestBigPipeBoundedConcurrent: more big bodies at once than the
// big pool's bound (lowered to 2 here) are read into buffers past it,
// every body whole and unmixed, and no more than the bound is open.
func TestBigPipeBoundedConcurrent(t *testing.T) {
	b := patternBackend(t)
	px := startProxyOn(t, poolYAML("round_robin", []*testBackend{b}, nil), nil, func(ln net.Listener) net.Listener {
		return smallSendBuffers{ln}
	})
	px.proxy.bigPipes.max.Store(2)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if o := px.proxy.bigPipes.open.Load(); o > peak.Load() {
				peak.Store(o)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for w := range 6 {
		wg.Go(func() {
			conn, r := dialProxy(t, px.addr)
			_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
			// Pipelined: a big spliced body, a small one, a big one.
			order := []int{300<<10 + w, 1000, 500<<10 + w}
			var reqs bytes.Buffer
			for i, n := range order {
				fmt.Fprintf(&reqs, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", n, w*10+i)
			}
			_, _ = conn.Write(reqs.Bytes())
			for i, n := range order {
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					errs <- fmt.Errorf("worker %d answer %d: %v", w, i, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, seeded(n, w*10+i)) {
					errs <- fmt.Errorf("worker %d answer %d (%d bytes): status %d, %d bytes, %v", w, i, n, resp.StatusCode, len(body), err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			conn.Close()
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d big pipes open at once over a bound of 2", p)
	}
	pipesClosed(t, px)
}

// TestBigPipeUnspliceDirect: a big pipe that runs out of slots
// (a 600 KiB body written in 1000-byte pieces) gives its body to a
// buffer of its own (no lent class holds it), whole; the pipe, empty,
// goes back to the big pool, not the small one.
func TestBigPipeUnspliceDirect(t *testing.T) {
	const n = 600 << 10
	ln := serveRaw(t, func(c net.Conn) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
		body := seeded(n, 5)
		for i := 0; i < n; i += 1000 {
			_, _ = c.Write(body[i:min(i+1000, n)])
			if i%(100<<10) == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		_, _ = io.Copy(io.Discard, c)
	})
	conn := dialUpstream(t, ln.Addr().String())
	small, big := &pipePool{}, &pipePool{size: bigPipeSize}
	loan := &bodyLoan{pools: &bodyPools{}, pipes: small, bigPipes: big, up: conn}
	var resp fasthttp.Response
	if _, err := readResponse(&resp, bufio.NewReaderSize(conn, upstreamReadBufferSize), 1<<21, nil, loan); err != nil {
		t.Fatal(err)
	}
	if got := resp.Body(); !bytes.Equal(got, seeded(n, 5)) {
		t.Fatalf("body: %d bytes, intact %v", len(got), bytes.Equal(got, seeded(n, 5)))
	}
	t.Logf("spliced %v, small pipes %d, big pipes %d", loan.pipe != nil, small.open.Load(), big.open.Load())
	if small.open.Load() != 0 || big.open.Load() != 1 {
		t.Fatalf("small pipes open %d, big %d; want 0 and 1", small.open.Load(), big.open.Load())
	}
	loan.drop()
}
