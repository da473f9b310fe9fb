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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/netconn"
)

// Review, session 24, area dos: resource use under hostile or broken
// clients and backends.

// r24DosBackend serves each connection with handle on 127.0.0.1.
// Handlers that stall should wait on stop; cleanup closes stop, every
// connection and the listener, and waits for the handlers. open counts
// the connections the backend has open now, peak the most at once.
type r24DosBackend struct {
	ln         net.Listener
	stop       chan struct{}
	open, peak atomic.Int64
	accepted   atomic.Int64
	mu         sync.Mutex
	conns      map[net.Conn]bool
}

func r24DosStartBackend(t *testing.T, handle func(b *r24DosBackend, c net.Conn, br *bufio.Reader)) *r24DosBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &r24DosBackend{ln: ln, stop: make(chan struct{}), conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			n := b.open.Add(1)
			for {
				p := b.peak.Load()
				if n <= p || b.peak.CompareAndSwap(p, n) {
					break
				}
			}
			b.mu.Lock()
			b.conns[c] = true
			b.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
					b.open.Add(-1)
				}()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(b, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		close(b.stop)
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *r24DosBackend) addr() string { return b.ln.Addr().String() }

// r24DosReadHead reads one request head (and a Content-Length body)
// from br; false at EOF or on an error.
func r24DosReadHead(br *bufio.Reader) (path string, ok bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return "", false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	return req.URL.Path, true
}

// r24DosAnswer writes a 200 with a body of n bytes.
func r24DosAnswer(c net.Conn, n int) bool {
	if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n); err != nil {
		return false
	}
	_, err := c.Write(bytes.Repeat([]byte{'b'}, n))
	return err == nil
}

// r24DosProxy starts a proxy for the backend at addr with extra
// top-level YAML.
func r24DosProxy(t *testing.T, addr, extra string) *testProxy {
	t.Helper()
	px, _ := r24DosProxyLn(t, addr, extra)
	return px
}

// r24DosProxyLn is r24DosProxy that also returns its listener,
// whose Open counts the client connections the proxy has not closed.
func r24DosProxyLn(t *testing.T, addr, extra string) (*testProxy, *netconn.Listener) {
	t.Helper()
	var nl *netconn.Listener
	px := startProxyOn(t, extra+fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", addr), nil,
		func(ln net.Listener) net.Listener {
			nl = ln.(*netconn.Listener)
			return ln
		})
	return px, nl
}

// r24DosOpenDrops waits up to wait for ln to have no open
// connection (the clients may still hold theirs), and fails otherwise.
func r24DosOpenDrops(t *testing.T, ln *netconn.Listener, wait time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for ln.Open() > 0 {
		if time.Now().After(deadline) {
			_, stacks := r24DosGoroutines()
			t.Fatalf("%s: %d client connections still open at the proxy after %v; goroutines:\n%s", what, ln.Open(), wait, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func r24DosFds(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// r24DosGoroutines counts goroutines, leaving out fasthttp's idle
// workers, which its pool keeps for up to 10 s after they served a
// connection (by design, not a leak), and returns the stacks of the
// others.
func r24DosGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var kept []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*workerPool).workerFunc") && !strings.Contains(g, "serveConn") {
			continue
		}
		kept = append(kept, g)
	}
	return len(kept), strings.Join(kept, "\n\n")
}

// r24DosBase is a baseline of goroutines, descriptors and heap.
type r24DosBase struct {
	g, fds int
	heap   uint64
}

func r24DosBaseline(t *testing.T) r24DosBase {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	g, _ := r24DosGoroutines()
	return r24DosBase{g: g, fds: r24DosFds(t), heap: ms.HeapInuse}
}

// r24DosSettle waits up to wait for goroutines and descriptors to
// come back to within slack of base, and the heap to within heapSlack
// bytes of it, then fails with what is left.
func r24DosSettle(t *testing.T, base r24DosBase, slack int, heapSlack uint64, wait time.Duration) {
	t.Helper()
	r24DosSettleBy(t, base, slack, 0, heapSlack, wait)
}

// r24DosSettleBy is r24DosSettle with clientFds more
// descriptors allowed: connections the test itself holds open.
func r24DosSettleBy(t *testing.T, base r24DosBase, slack, clientFds int, heapSlack uint64, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		runtime.GC()
		g, stacks := r24DosGoroutines()
		fds := r24DosFds(t)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		ok := g <= base.g+slack && fds <= base.fds+slack+clientFds && ms.HeapInuse <= base.heap+heapSlack
		if ok {
			t.Logf("settled: goroutines %d (base %d), fds %d (base %d), heap in use %d KiB (base %d KiB)",
				g, base.g, fds, base.fds, ms.HeapInuse>>10, base.heap>>10)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: goroutines %d (base %d), fds %d (base %d), heap in use %d KiB (base %d KiB); goroutines:\n%s",
				wait, g, base.g, fds, base.fds, ms.HeapInuse>>10, base.heap>>10, stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// r24DosWarm sends a few requests so that pools, the server's
// workers and the upstream connection exist before the baseline.
func r24DosWarm(t *testing.T, addr string) {
	t.Helper()
	for range 3 {
		c, br := dialProxy(t, addr)
		fmt.Fprintf(c, "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("warm request: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Close()
	}
}

// r24DosStatus reads an answer's status from br; 0 when none came
// (a close or reset).
func r24DosStatus(br *bufio.Reader) int {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// r24DosOKBackend answers every request 200 with a body of the
// length its path's last element says (default 2).
func r24DosOKBackend(t *testing.T) *r24DosBackend {
	return r24DosStartBackend(t, func(b *r24DosBackend, c net.Conn, br *bufio.Reader) {
		for {
			path, ok := r24DosReadHead(br)
			if !ok {
				return
			}
			n := 2
			if i := strings.LastIndexByte(path, '/'); i >= 0 {
				if v, err := strconv.Atoi(path[i+1:]); err == nil {
					n = v
				}
			}
			if !r24DosAnswer(c, n) {
				return
			}
		}
	})
}

// TestDosSlowlorisHeadsCut: 30 connections each sending a head a
// byte every 40 ms (they never finish it within client_read, 600 ms) get
// 408 at about client_read, not at each byte's renewal; afterwards
// goroutines, descriptors and heap come back to their baseline.
func TestDosSlowlorisHeadsCut(t *testing.T) {
	b := r24DosOKBackend(t)
	px := r24DosProxy(t, b.addr(), "timeouts: { client_read: 600ms, idle: 2s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	base := r24DosBaseline(t)
	const n = 30
	head := "GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 200) + "\r\n\r\n"
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(6 * time.Second))
			done := make(chan struct{})
			go func() {
				defer close(done)
				codes[i] = r24DosStatus(bufio.NewReader(c))
			}()
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			for j := 0; j < len(head); j++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{head[j]}); err != nil {
					<-done
					return
				}
			}
			<-done
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusRequestTimeout {
			t.Errorf("slow head %d got %d, want 408", i, code)
		}
	}
	r24DosSettle(t, base, 4, 8<<20, 8*time.Second)
}

// TestDosSlowBodyCut: a body that trickles a byte every 40 ms
// (Content-Length 1000, client_read 600 ms) gets 408, the backend never
// sees it, and resources come back.
func TestDosSlowBodyCut(t *testing.T) {
	b := r24DosOKBackend(t)
	px := r24DosProxy(t, b.addr(), "timeouts: { client_read: 600ms, idle: 2s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	hits := b.accepted.Load()
	base := r24DosBaseline(t)
	for _, chunked := range []bool{false, true} {
		c, br := dialProxy(t, px.addr)
		if chunked {
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
		} else {
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		}
		done := make(chan int)
		go func() { done <- r24DosStatus(br) }()
		tick := time.NewTicker(40 * time.Millisecond)
		code := -1
	loop:
		for range 200 {
			select {
			case code = <-done:
				break loop
			case <-tick.C:
			}
			piece := "a"
			if chunked {
				piece = "1\r\na\r\n"
			}
			if _, err := io.WriteString(c, piece); err != nil {
				code = <-done
				break
			}
		}
		tick.Stop()
		if code == -1 {
			code = <-done
		}
		if code != http.StatusRequestTimeout {
			t.Errorf("chunked=%v: slow body got %d, want 408", chunked, code)
		}
		c.Close()
	}
	if got := b.accepted.Load(); got != hits {
		t.Errorf("backend accepted %d connections for slow bodies, want none", got-hits)
	}
	r24DosSettle(t, base, 4, 8<<20, 8*time.Second)
}

// TestDosSilentConnsFreed: max_client_conns (20) connections that
// open and send nothing hold every slot (one more gets 503) only until
// client_read (500 ms): then they are closed and new connections are
// served; goroutines and descriptors come back.
func TestDosSilentConnsFreed(t *testing.T) {
	b := r24DosOKBackend(t)
	px := r24DosProxy(t, b.addr(), "limits: { max_client_conns: 20 }\ntimeouts: { client_read: 500ms, idle: 2s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	base := r24DosBaseline(t)
	var silent []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	time.Sleep(100 * time.Millisecond)
	extra, br := dialProxy(t, px.addr)
	fmt.Fprintf(extra, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if code := r24DosStatus(br); code != http.StatusServiceUnavailable {
		t.Errorf("connection over max_client_conns got %d, want 503", code)
	}
	extra.Close()
	// Every silent connection is closed by the proxy (EOF or a 408).
	for i, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
		_, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("silent connection %d still open 4 s after client_read (500ms)", i)
		}
		c.Close()
	}
	c, br := dialProxy(t, px.addr)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if code := r24DosStatus(br); code != http.StatusOK {
		t.Errorf("after the silent connections went, a new one got %d, want 200", code)
	}
	c.Close()
	r24DosSettle(t, base, 4, 8<<20, 8*time.Second)
}

// r24DosSmallRcvbuf dials addr with a small receive buffer, so that
// an answer the client does not read stalls the proxy's write soon.
func r24DosSmallRcvbuf(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetReadBuffer(4096)
	return tc
}

// TestDosNonReadingClientCut: a client that asks for a long
// answer and never reads it (lent 100 KiB, spliced 64 KiB and 900 KiB,
// read whole 4 MiB) is cut within client_write (400 ms) of its write's
// last progress, or, when the kernel took the answer whole, at idle; the
// connection is closed either way, pipes and buffers go back, and
// goroutines, descriptors and heap come back to their baseline.
func TestDosNonReadingClientCut(t *testing.T) {
	b := r24DosOKBackend(t)
	px, ln := r24DosProxyLn(t, b.addr(), "timeouts: { client_write: 400ms, client_read: 1s, idle: 1s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	pipesClosed(t, px)
	base := r24DosBaseline(t)
	sizes := []int{100 << 10, 64 << 10, 900 << 10, 4 << 20}
	var conns []*net.TCPConn
	for range 4 {
		for _, n := range sizes {
			c := r24DosSmallRcvbuf(t, px.addr)
			fmt.Fprintf(c, "GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			conns = append(conns, c)
		}
	}
	// Never reading, the clients keep their connections open: the proxy
	// must let its side go (client_write, or idle once the kernel took
	// the answer whole), its goroutines and descriptors with it; the
	// clients' own descriptors are in this process too.
	start := time.Now()
	r24DosOpenDrops(t, ln, 8*time.Second, "clients that never read")
	t.Logf("the proxy closed them all %v after the last request", time.Since(start).Round(time.Millisecond))
	r24DosSettleBy(t, base, 4, len(conns), 16<<20, 8*time.Second)
	for _, c := range conns {
		c.Close()
	}
	pipesClosed(t, px)
	r24DosSettle(t, base, 4, 16<<20, 8*time.Second)
}

// TestDosPipelinedFlood: 3000 requests in one write are all
// answered, in order; a second client sends 20000 and never reads: it is
// cut (client_write), and resources come back.
func TestDosPipelinedFlood(t *testing.T) {
	b := r24DosOKBackend(t)
	px, ln := r24DosProxyLn(t, b.addr(), "timeouts: { client_write: 400ms, client_read: 1s, idle: 1s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	base := r24DosBaseline(t)
	var wire bytes.Buffer
	const n = 3000
	for i := range n {
		fmt.Fprintf(&wire, "GET /p%d/3 HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(8 * time.Second))
	go func() { _, _ = c.Write(wire.Bytes()) }()
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i, n, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "bbb" {
			t.Fatalf("answer %d: %d %q, want 200 \"bbb\"", i, resp.StatusCode, body)
		}
	}
	c.Close()

	wire.Reset()
	for i := range 20000 {
		fmt.Fprintf(&wire, "GET /q%d/4000 HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	d := r24DosSmallRcvbuf(t, px.addr)
	_ = d.SetWriteDeadline(time.Now().Add(5 * time.Second))
	wrote := make(chan struct{})
	go func() { defer close(wrote); _, _ = d.Write(wire.Bytes()) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	r24DosOpenDrops(t, ln, 8*time.Second, "a flooding client that never reads")
	t.Logf("the proxy closed it %v after", time.Since(start).Round(time.Millisecond))
	r24DosSettleBy(t, base, 4, 1, 16<<20, 8*time.Second)
	d.Close()
	<-wrote
	r24DosSettle(t, base, 4, 16<<20, 8*time.Second)
}

// TestDosHeadLimits: a head of exactly max_header_bytes (blank
// line included) is served; one byte more gets 431.
func TestDosHeadLimits(t *testing.T) {
	b := r24DosOKBackend(t)
	for _, limit := range []int{1024, 8192, 65536} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			px := r24DosProxy(t, b.addr(), fmt.Sprintf("limits: { max_header_bytes: %d }\ntimeouts: { client_read: 2s }\n", limit))
			for _, tt := range []struct {
				size int
				want int
			}{{limit - 1, 200}, {limit, 200}, {limit + 1, 431}, {limit + 100, 431}} {
				pre := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
				pad := tt.size - len(pre) - len("\r\n\r\n")
				head := pre + strings.Repeat("a", pad) + "\r\n\r\n"
				c, br := dialProxy(t, px.addr)
				_, _ = io.WriteString(c, head)
				if code := r24DosStatus(br); code != tt.want {
					t.Errorf("head of %d bytes (limit %d) got %d, want %d", len(head), limit, code, tt.want)
				}
				c.Close()
			}
		})
	}
}

// TestDosManyTinyFields: a head of max_header_bytes (1 MiB) made
// of about 200,000 tiny fields, of kinds the proxy looks at (hop-by-hop,
// forwarded aliases, cookies, repeated ordinary names), is answered within
// the test's bound (no quadratic pass over the fields), and the heap
// comes back.
func TestDosManyTinyFields(t *testing.T) {
	var got atomic.Int64
	b := r24DosStartBackend(t, func(b *r24DosBackend, c net.Conn, br *bufio.Reader) {
		for {
			n := 0
			for {
				line, err := br.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					return
				}
				if len(line) <= 2 && err == nil {
					break
				}
				n++
			}
			got.Store(int64(n))
			if !r24DosAnswer(c, 2) {
				return
			}
		}
	})
	px := r24DosProxy(t, b.addr(), "limits: { max_header_bytes: 1048576 }\ntimeouts: { client_read: 8s, response: 8s }\n")
	r24DosWarm(t, px.addr)
	base := r24DosBaseline(t)
	kinds := []string{"a:b", "Te:x", "Keep-Alive:1", "Proxy-Connection:x", "X_Forwarded_For:1", "Cookie:a=b", "Via:x", "Upgrade:x", "X-Forwarded-For:1"}
	for _, k := range kinds {
		t.Run(strings.SplitN(k, ":", 2)[0], func(t *testing.T) {
			var h bytes.Buffer
			h.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
			for h.Len()+len(k)+2+4 <= 1<<20 {
				h.WriteString(k)
				h.WriteString("\r\n")
			}
			h.WriteString("\r\n")
			c, br := dialProxy(t, px.addr)
			_ = c.SetDeadline(time.Now().Add(9 * time.Second))
			start := time.Now()
			go func() { _, _ = c.Write(h.Bytes()) }()
			code := r24DosStatus(br)
			t.Logf("%d fields of %q: %d after %v (backend saw %d lines)", h.Len()/(len(k)+2), k, code, time.Since(start).Round(time.Millisecond), got.Load())
			if code == 0 {
				t.Errorf("no answer to a head of %d tiny %q fields within 9 s", h.Len()/(len(k)+2), k)
			}
			c.Close()
		})
	}
	r24DosSettle(t, base, 4, 32<<20, 8*time.Second)
}

// TestDosOneByteChunks: a chunked request body of 200,000
// one-byte chunks reaches the backend whole, and the heap comes back.
func TestDosOneByteChunks(t *testing.T) {
	var got atomic.Int64
	b := r24DosStartBackend(t, func(b *r24DosBackend, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			got.Store(n)
			if !r24DosAnswer(c, 2) {
				return
			}
		}
	})
	px := r24DosProxy(t, b.addr(), "timeouts: { client_read: 8s, response: 8s }\n")
	r24DosWarm(t, px.addr)
	base := r24DosBaseline(t)
	const n = 200000
	var w bytes.Buffer
	w.WriteString("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range n {
		w.WriteString("1\r\na\r\n")
	}
	w.WriteString("0\r\n\r\n")
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(9 * time.Second))
	go func() { _, _ = c.Write(w.Bytes()) }()
	if code := r24DosStatus(br); code != 200 || got.Load() != n {
		t.Errorf("chunked body of %d one-byte chunks: %d, backend got %d bytes; want 200 and %d", n, code, got.Load(), n)
	}
	c.Close()
	r24DosSettle(t, base, 4, 16<<20, 8*time.Second)
}

// TestDosStalledBackends: backends that trickle their head, stall
// in a body (lent, spliced, chunked) or never close a close-delimited
// answer get 504 at timeouts.response; with max_conns_per_backend 1 the
// next request after each is served (the slot came back); the backend's
// connection is closed; resources and pipes come back.
func TestDosStalledBackends(t *testing.T) {
	b := r24DosStartBackend(t, func(b *r24DosBackend, c net.Conn, br *bufio.Reader) {
		for {
			path, ok := r24DosReadHead(br)
			if !ok {
				return
			}
			// A stall ends when the proxy closes the connection.
			// Each of these sends part of an answer (or nothing) and then
			// stalls: the client must get 504 at timeouts.response.
			if part, ok := r24DosPartialAnswers[path]; ok {
				_, _ = io.WriteString(c, part)
				_, _ = io.Copy(io.Discard, c)
				return
			}
			switch path {
			case "/trickle":
				head := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Long: " + strings.Repeat("x", 1000) + "\r\n\r\nok"
				for i := 0; i < len(head); i++ {
					if _, err := c.Write([]byte{head[i]}); err != nil {
						return
					}
					select {
					case <-b.stop:
						return
					case <-time.After(30 * time.Millisecond):
					}
				}
				return
			default:
				if !r24DosAnswer(c, 2) {
					return
				}
			}
		}
	})
	px := r24DosProxy(t, b.addr(), "limits: { max_conns_per_backend: 1 }\nretries: { attempts: 1 }\ntimeouts: { response: 500ms, client_read: 2s, idle: 2s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	pipesClosed(t, px)
	base := r24DosBaseline(t)
	for _, path := range []string{"/trickle", "/lent", "/spliced", "/bigspliced", "/long", "/chunked", "/close", "/nothing"} {
		c, br := dialProxy(t, px.addr)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		time.Sleep(150 * time.Millisecond) // the stalled exchange holds the one connection
		other, obr := dialProxy(t, px.addr)
		fmt.Fprintf(other, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
		if code := r24DosStatus(obr); code != http.StatusServiceUnavailable {
			t.Errorf("during %s: a second request got %d, want 503 (max_conns_per_backend 1 taken)", path, code)
		}
		if code := r24DosStatus(br); code != http.StatusGatewayTimeout {
			t.Errorf("%s: got %d, want 504", path, code)
		}
		fmt.Fprintf(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
		if code := r24DosStatus(br); code != http.StatusOK {
			t.Errorf("after %s: next request got %d, want 200 (max_conns_per_backend slot back)", path, code)
		}
		c.Close()
		other.Close()
	}
	pipesClosed(t, px)
	r24DosSettle(t, base, 4, 16<<20, 8*time.Second)
}

// TestDosSlowlorisAfterAnswer: on a kept-alive connection, a
// second head trickled a byte every 40 ms gets 408 at client_read (500 ms)
// from its first byte, whatever the answer before it (short; lent and
// awaiting the next request; spliced; past keptBodyLimit), not idle (8 s),
// which would let it finish and be served.
func TestDosSlowlorisAfterAnswer(t *testing.T) {
	b := r24DosOKBackend(t)
	px := r24DosProxy(t, b.addr(), "timeouts: { client_read: 500ms, idle: 8s, upstream_idle: 2s }\n")
	head := "GET /2 HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 60) + "\r\n\r\n"
	for _, n := range []int{2, 8 << 10, 64 << 10, 300 << 10} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			_ = c.SetDeadline(time.Now().Add(8 * time.Second))
			fmt.Fprintf(c, "GET /first/%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			if code := r24DosStatus(br); code != 200 {
				t.Fatalf("first request: %d", code)
			}
			done := make(chan int, 1)
			go func() { done <- r24DosStatus(br) }()
			code := -1
			for i := 0; i < len(head) && code == -1; i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					break
				}
				select {
				case code = <-done:
				case <-time.After(40 * time.Millisecond):
				}
			}
			if code == -1 {
				code = <-done
			}
			if code != http.StatusRequestTimeout {
				t.Errorf("a second head trickled over %v after a %d-byte answer got %d, want 408 at client_read",
					time.Duration(len(head))*40*time.Millisecond, n, code)
			}
		})
	}
}

// TestDosIdleConnKeepsNoHeaderFields: a kept-alive connection
// whose request head was made of many tiny fields holds, once idle, about
// what one whose head was short holds (README, Memory and GC: "about
// 14 KiB when idle"), and never more than a few times max_header_bytes.
// fasthttp's RequestHeader keeps its parsed fields (an argsKV per field,
// with its own key and value buffers) at their largest count for as long
// as the connection is open, so a client that sends one head of 8 KiB of
// "a:b" fields makes its idle connection hold about 180 KiB; at
// max_header_bytes 1 MiB, about 12 MiB each, for timeouts.idle.
func TestDosIdleConnKeepsNoHeaderFields(t *testing.T) {
	b := r24DosOKBackend(t)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	for _, tt := range []struct {
		limit, conns int
	}{{8192, 64}, {1 << 20, 4}} {
		t.Run(strconv.Itoa(tt.limit), func(t *testing.T) {
			px := r24DosProxy(t, b.addr(), fmt.Sprintf("limits: { max_header_bytes: %d }\ntimeouts: { client_read: 8s, idle: 30s }\n", tt.limit))
			r24DosWarm(t, px.addr)
			// grown is the heap the proxy holds per idle connection once
			// each sent one head of field lines (none: a short head).
			grown := func(field string) int64 {
				before := heap()
				var open []net.Conn
				defer func() {
					for _, c := range open {
						c.Close()
					}
				}()
				for range tt.conns {
					var h bytes.Buffer
					h.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
					for field != "" && h.Len()+len(field)+2+2 <= tt.limit {
						h.WriteString(field + "\r\n")
					}
					h.WriteString("\r\n")
					c, br := dialProxy(t, px.addr)
					_ = c.SetDeadline(time.Now().Add(8 * time.Second))
					open = append(open, c)
					go func() { _, _ = c.Write(h.Bytes()) }()
					if code := r24DosStatus(br); code != 200 {
						t.Fatalf("head of %d bytes of %q fields: %d, want 200", h.Len(), field, code)
					}
				}
				return (heap() - before) / int64(tt.conns)
			}
			plain := grown("")
			fields := grown("a:b")
			t.Logf("max_header_bytes %d: heap per idle connection %d KiB after a short head, %d KiB after a head of tiny fields",
				tt.limit, plain>>10, fields>>10)
			if want := plain + 32<<10 + int64(tt.limit); fields > want {
				t.Errorf("an idle connection whose one head held %d tiny fields keeps %d KiB of heap, want at most %d KiB (%d KiB after a short head, plus max_header_bytes and 32 KiB)",
					tt.limit/5, fields>>10, want>>10, plain>>10)
			}
		})
	}
}

// TestDosIdleConnKeepsNoResponseFields: a client connection that
// was passed one answer whose head (within the 16 KiB upstream head
// limit) held 3000 tiny fields holds, once idle, about what one that was
// passed a short head holds. fasthttp's ResponseHeader keeps its parsed
// fields at their largest count for as long as the client connection is
// open, as the request's do: about 250 KiB per idle connection, against
// about 20.
func TestDosIdleConnKeepsNoResponseFields(t *testing.T) {
	b := r24DosStartBackend(t, func(b *r24DosBackend, c net.Conn, br *bufio.Reader) {
		for {
			path, ok := r24DosReadHead(br)
			if !ok {
				return
			}
			h := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
			if path == "/many" {
				h += strings.Repeat("a:b\r\n", 3000)
			}
			if _, err := fmt.Fprintf(c, "%s\r\nok", h); err != nil {
				return
			}
		}
	})
	px := r24DosProxy(t, b.addr(), "timeouts: { client_read: 8s, idle: 30s }\n")
	r24DosWarm(t, px.addr)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	const conns = 64
	grown := func(path string) int64 {
		before := heap()
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range conns {
			c, br := dialProxy(t, px.addr)
			open = append(open, c)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			if code := r24DosStatus(br); code != 200 {
				t.Fatalf("%s: %d, want 200", path, code)
			}
		}
		return (heap() - before) / conns
	}
	plain, many := grown("/plain"), grown("/many")
	t.Logf("heap per idle connection: %d KiB after a short answer head, %d KiB after one of 3000 fields", plain>>10, many>>10)
	if want := plain + 48<<10; many > want {
		t.Errorf("an idle client connection that was passed an answer head of 3000 tiny fields keeps %d KiB of heap, want at most %d KiB (%d KiB after a short head, plus 48 KiB)",
			many>>10, want>>10, plain>>10)
	}
}

// TestDosPipelinedSplicedNeverRead: clients that each pipeline 50
// requests for spliced answers (64 KiB, 600 KiB) in one write and never
// read are cut at client_write; the proxy closes their connections and
// every pipe is given back or closed.
func TestDosPipelinedSplicedNeverRead(t *testing.T) {
	b := r24DosOKBackend(t)
	px, ln := r24DosProxyLn(t, b.addr(), "timeouts: { client_write: 400ms, client_read: 1s, idle: 1s, upstream_idle: 300ms }\n")
	r24DosWarm(t, px.addr)
	pipesClosed(t, px)
	base := r24DosBaseline(t)
	var conns []*net.TCPConn
	for _, n := range []int{64 << 10, 600 << 10, 64 << 10, 600 << 10} {
		var w bytes.Buffer
		for i := range 50 {
			fmt.Fprintf(&w, "GET /s%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", i, n)
		}
		c := r24DosSmallRcvbuf(t, px.addr)
		_, _ = c.Write(w.Bytes())
		conns = append(conns, c)
	}
	r24DosOpenDrops(t, ln, 8*time.Second, "pipelining clients that never read")
	for _, c := range conns {
		c.Close()
	}
	pipesClosed(t, px)
	r24DosSettle(t, base, 4, 16<<20, 8*time.Second)
}

// r24DosPartialAnswers are the stalled backend's part answers by path.
var r24DosPartialAnswers = map[string]string{
	"/lent":       "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("l", 10000),
	"/spliced":    "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n" + strings.Repeat("s", 40000),
	"/bigspliced": "HTTP/1.1 200 OK\r\nContent-Length: 900000\r\n\r\n" + strings.Repeat("s", 500000),
	"/long":       "HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n" + strings.Repeat("s", 2000000),
	"/chunked":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	"/close":      "HTTP/1.1 200 OK\r\n\r\nsome of it",
	"/nothing":    "",
}
