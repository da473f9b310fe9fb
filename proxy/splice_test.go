package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// TestSplicedAnswers: bodies from spliceMinBody to bigPipeSize go through
// a pipe (a big one past pipeSize), shorter and longer ones do not, and every one arrives whole, to
// GET and HEAD, one at a time and pipelined.
func TestSplicedAnswers(t *testing.T) {
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	base := "http://" + px.addr
	c := testClient(t)
	// A collection would close pooled pipes (open then says nothing).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	sizes := []struct {
		n       int
		spliced bool
	}{
		{spliceMinBody - 1, false},
		{bigPipeSize + 1, false},
		{spliceMinBody, true},
		{64 << 10, true},
		{pipeSize, true},
		{pipeSize + 1, true}, // a big pipe
		{bigPipeSize, true},
	}
	for i, sz := range sizes {
		code, _, body := get(t, c, fmt.Sprintf("%s/%d/%d", base, sz.n, i), nil)
		if code != http.StatusOK || !bytes.Equal([]byte(body), seeded(sz.n, i)) {
			t.Fatalf("GET %d bytes: %d, %d bytes, intact %v", sz.n, code, len(body), bytes.Equal([]byte(body), seeded(sz.n, i)))
		}
		if open := px.proxy.pipes.open.Load() + px.proxy.bigPipes.open.Load(); (open > 0) != sz.spliced {
			t.Fatalf("after a body of %d bytes %d pipes are open; spliced: %v", sz.n, open, sz.spliced)
		}
		req, _ := http.NewRequest(http.MethodHead, fmt.Sprintf("%s/%d/%d", base, sz.n, i), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(sz.n) {
			t.Fatalf("HEAD %d bytes: %d, Content-Length %d", sz.n, resp.StatusCode, resp.ContentLength)
		}
	}

	t.Run("pipelined", func(t *testing.T) {
		conn, r := dialProxy(t, px.addr)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		order := []int{64 << 10, 1000, pipeSize, 40 << 10, 5, 600 << 10, 64 << 10}
		var reqs bytes.Buffer
		for i, n := range order {
			fmt.Fprintf(&reqs, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", n, 50+i)
		}
		if _, err := conn.Write(reqs.Bytes()); err != nil {
			t.Fatal(err)
		}
		for i, n := range order {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, seeded(n, 50+i)) {
				t.Fatalf("answer %d (%d bytes): %d bytes, %v, intact %v", i, n, len(body), err, bytes.Equal(body, seeded(n, 50+i)))
			}
		}
	})
}

// TestSplicedBodyCutOrStalled: a backend that stops in the middle of a
// body being spliced gets the answer a buffered body gets, 502 for a
// close and 504 for silence, and the pipe that held part of the body is
// closed, not pooled with bytes in it.
func TestSplicedBodyCutOrStalled(t *testing.T) {
	const n, sent = 64 << 10, 40000
	for _, close := range []bool{true, false} {
		name, want := "stalled", http.StatusGatewayTimeout
		if close {
			name, want = "closed", http.StatusBadGateway
		}
		t.Run(name, func(t *testing.T) {
			ln := serveRaw(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				_, _ = c.Write(seeded(sent, 1))
				if !close {
					time.Sleep(time.Second) // past the response timeout
				}
			})
			px := startProxy(t, fmt.Sprintf("timeouts: { response: 300ms }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
			code, _, _ := get(t, testClient(t), "http://"+px.addr+"/", nil)
			if code != want {
				t.Fatalf("status %d, want %d", code, want)
			}
			if open := px.proxy.pipes.open.Load(); open != 0 {
				t.Fatalf("%d pipes open after the body was cut", open)
			}
		})
	}
}

// TestAbortedSplicedAnswersCloseTheirPipes: clients that go away before
// their spliced answer is written leave no pipe open for long: a pipe
// still holding a body is closed when given back, or when its write
// fails (TestAbortedSplicedAnswersClosePipes, without the collector);
// the pool's own close when the collector drops them.
func TestAbortedSplicedAnswersCloseTheirPipes(t *testing.T) {
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	for i := range 50 {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", pipeSize, i)
		_ = conn.(*net.TCPConn).SetLinger(0) // a reset
		conn.Close()
	}
	// Spliced answers that did go out, to pooled pipes.
	c := testClient(t)
	for i := range 5 {
		if code, _, body := get(t, c, fmt.Sprintf("http://%s/%d/%d", px.addr, 64<<10, i), nil); code != http.StatusOK || len(body) != 64<<10 {
			t.Fatalf("GET: %d, %d bytes", code, len(body))
		}
	}
	if px.proxy.pipes.open.Load() == 0 {
		t.Fatal("no pipe open after spliced answers")
	}
	c.CloseIdleConnections()
	pipesClosed(t, px)
}

// pipesClosed waits, collecting, at most 10 s, until px has no pipe of
// either pool open: the pipes pooled and the ones lent to connections
// gone are closed by the collector.
func pipesClosed(t *testing.T, px *testProxy) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for px.proxy.pipes.open.Load()+px.proxy.bigPipes.open.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d small and %d big pipes still open", px.proxy.pipes.open.Load(), px.proxy.bigPipes.open.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSpliceFallsBackWhenPipeFull: a pipe that runs out of slots before
// the body ends (one page fragment a slot; this one has a single slot and
// the body comes in pieces) gives the body to a lent buffer, whole.
func TestSpliceFallsBackWhenPipeFull(t *testing.T) {
	const n = 64 << 10
	for _, tt := range []struct {
		name     string
		pipeSize int
		spliced  bool
	}{
		{"one slot", 4096, false},
		{"default", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln := serveRaw(t, func(c net.Conn) {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				body := seeded(n, 3)
				for i := 0; i < n; i += 8 << 10 {
					_, _ = c.Write(body[i : i+8<<10])
					time.Sleep(3 * time.Millisecond)
				}
				_, _ = io.Copy(io.Discard, c) // until the test closes
			})
			conn := dialUpstream(t, ln.Addr().String())
			loan := &bodyLoan{pools: &bodyPools{}, pipes: &pipePool{size: tt.pipeSize}, up: conn}
			var resp fasthttp.Response
			if _, err := readResponse(&resp, bufio.NewReaderSize(conn, upstreamReadBufferSize), 1<<20, nil, loan); err != nil {
				t.Fatal(err)
			}
			if (loan.pipe != nil) != tt.spliced || (loan.buf != nil) == tt.spliced {
				t.Fatalf("the body went to a pipe: %v, to a buffer: %v; want spliced %v", loan.pipe != nil, loan.buf != nil, tt.spliced)
			}
			if got := resp.Body(); !bytes.Equal(got, seeded(n, 3)) {
				t.Fatalf("body: %d bytes, intact %v", len(got), bytes.Equal(got, seeded(n, 3)))
			}
			if cl := resp.Header.Peek("Content-Length"); string(cl) != strconv.Itoa(n) {
				t.Fatalf("Content-Length %q", cl)
			}
			loan.drop()
		})
	}
}

// TestSpliceRefusedTurnsSplicingOff: a system that refuses to splice from
// a socket (the "pipe" here is a regular file, which splice refuses as
// some sandboxes refuse sockets) gets the body read into a buffer, whole,
// and no more splicing from then on.
func TestSpliceRefusedTurnsSplicingOff(t *testing.T) {
	const n = 64 << 10
	ln := serveRaw(t, func(c net.Conn) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
		_, _ = c.Write(seeded(n, 4))
		_, _ = io.Copy(io.Discard, c)
	})
	conn := dialUpstream(t, ln.Addr().String())
	f, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pp := &pipePool{}
	fake := &bodyPipe{fds: pipeFds{r: int(f.Fd()), w: int(f.Fd()), open: &pp.open}, pool: pp}
	loan := &bodyLoan{pools: &bodyPools{}, pipes: pp, up: conn}
	var resp fasthttp.Response
	r := bufio.NewReaderSize(conn, upstreamReadBufferSize)
	if err := resp.Header.Read(r); err != nil {
		t.Fatal(err)
	}
	if err := spliceBody(&resp, r, n, loan, fake); err != nil {
		t.Fatal(err)
	}
	if loan.buf == nil || loan.pipe != nil || !bytes.Equal(resp.Body(), seeded(n, 4)) {
		t.Fatalf("buffer %v, pipe %v, body of %d bytes intact %v", loan.buf != nil, loan.pipe != nil, len(resp.Body()), bytes.Equal(resp.Body(), seeded(n, 4)))
	}
	if !pp.off.Load() {
		t.Fatal("splicing still on after the system refused it")
	}
	loan.drop()
}

// TestPipesBounded: no more pipes are open than the pool's bound, which
// the descriptor limit sets (a sixteenth of it, at most 1024); past it a
// body is read into a buffer instead.
func TestPipesBounded(t *testing.T) {
	pp := &pipePool{}
	pp.max.Store(1)
	first := pp.get()
	if first == nil {
		t.Fatal("no pipe under the bound")
	}
	if second := pp.get(); second != nil {
		t.Fatalf("a second pipe with %d open and a bound of 1", pp.open.Load())
	}
	first.inPipe = 1 // closed, not pooled, when given back
	first.GiveBack()
	if open := pp.open.Load(); open != 0 {
		t.Fatalf("%d pipes open after the only one was closed", open)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if got, want := maxPipes(), int64(min(1024, lim.Cur/16)); got != want {
		t.Fatalf("maxPipes() = %d with a descriptor limit of %d, want %d", got, lim.Cur, want)
	}
}

// dialUpstream connects to addr as the upstream client does (a NewClient
// connection), with a deadline of 10 s; closed when the test ends.
func dialUpstream(t *testing.T, addr string) *netconn.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := netconn.NewClient(raw, upstreamWriteBufferSize)
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// TestPipeSizeRefused: a system that refuses a pipe its size (a user over
// fs.pipe-user-pages-soft; here a size no kernel grants) bounds the pipes
// to those open already, or turns splicing off when none is.
func TestPipeSizeRefused(t *testing.T) {
	pp := &pipePool{}
	held := pp.get()
	if held == nil {
		t.Fatal("no pipe")
	}
	pp.size = 1<<31 + 4096
	if p := pp.get(); p != nil {
		t.Fatal("a pipe of a refused size")
	}
	if max, open := pp.max.Load(), pp.open.Load(); max != 1 || open != 1 || pp.off.Load() {
		t.Fatalf("after a refusal with one pipe open: bound %d, open %d, off %v; want 1, 1, false", max, open, pp.off.Load())
	}
	held.inPipe = 1 // closed when given back
	held.GiveBack()

	none := &pipePool{size: 1<<31 + 4096}
	if p := none.get(); p != nil || !none.off.Load() || none.open.Load() != 0 {
		t.Fatalf("a refusal with no pipe open: pipe %v, off %v, open %d; want none, true, 0", p != nil, none.off.Load(), none.open.Load())
	}
}
