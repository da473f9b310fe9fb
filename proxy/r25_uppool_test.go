package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/metrics"
)

// r25UppoolBackend is a raw HTTP/1.1 backend on 127.0.0.1 whose
// answers a test writes itself (answer). It counts accepted connections
// and, at each accept, the connections really open then (those whose peer
// has not closed: a non-blocking peek), keeping the peak.
type r25UppoolBackend struct {
	ln       net.Listener
	accepts  atomic.Int64
	requests atomic.Int64
	peak     atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
	// answer writes the answer to req, the n-th request on its
	// connection (from 1), and says whether to keep the connection.
	answer func(c net.Conn, req *http.Request, n int) bool
}

func r25UppoolStart(t *testing.T, answer func(c net.Conn, req *http.Request, n int) bool) *r25UppoolBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &r25UppoolBackend{ln: ln, conns: map[net.Conn]bool{}, answer: answer}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepts.Add(1)
			b.mu.Lock()
			b.conns[c] = true
			live := int64(0)
			for o := range b.conns {
				if !r25UppoolPeerClosed(o) {
					live++
				}
			}
			b.mu.Unlock()
			for p := b.peak.Load(); live > p && !b.peak.CompareAndSwap(p, live); p = b.peak.Load() {
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
				}()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					b.requests.Add(1)
					if !b.answer(c, req, n) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *r25UppoolBackend) addr() string { return b.ln.Addr().String() }

// open is the number of connections open at the backend whose peer has
// not closed them.
func (b *r25UppoolBackend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for c := range b.conns {
		if !r25UppoolPeerClosed(c) {
			n++
		}
	}
	return n
}

func (b *r25UppoolBackend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// r25UppoolPeerClosed reports whether c's peer has closed (or reset)
// the connection, by a non-blocking peek that takes no read lock.
func r25UppoolPeerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	cerr := rc.Control(func(fd uintptr) {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = err == nil && n == 0 || err == syscall.ECONNRESET
	})
	return cerr != nil || closed
}

// r25UppoolOK writes a keep-alive 200 "ok".
func r25UppoolOK(c net.Conn) {
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

// r25UppoolDo sends one request through a client and returns its
// status (0 on a transport error).
func r25UppoolDo(c *http.Client, method, url, body string) int {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return -1
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func r25UppoolYAML(addrs []string, extra string) string {
	var b strings.Builder
	b.WriteString("routes: [{ pool: p }]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "      - { address: %s }\n", a)
	}
	b.WriteString(extra)
	return b.String()
}

func r25UppoolGauge(t *testing.T, m *metrics.Metrics, addr string) float64 {
	v, _ := reviewGauge(t, m, "sluice_upstream_connections", addr)
	return v
}

// TestUppoolReuseAndIdleClose: connections are reused (one for
// sequential requests, no more than the concurrency for parallel ones),
// sluice_upstream_connections says what the backend has open, and
// connections left idle are closed after timeouts.upstream_idle (the
// gauge going to 0 with them).
func TestUppoolReuseAndIdleClose(t *testing.T) {
	b := r25UppoolStart(t, func(c net.Conn, req *http.Request, _ int) bool {
		if req.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond)
		}
		if req.Method == http.MethodHead {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			return true
		}
		r25UppoolOK(c)
		return true
	})
	m := metrics.New("test")
	px := startProxyWith(t, r25UppoolYAML([]string{b.addr()}, "timeouts: { upstream_idle: 400ms }\n"), m)
	cl := testClient(t)
	url := "http://" + px.addr
	for i := range 30 {
		method := []string{"GET", "POST", "PUT", "DELETE", "HEAD"}[i%5]
		if code := r25UppoolDo(cl, method, url+"/", "x"); code != 200 {
			t.Fatalf("%s #%d = %d, want 200", method, i, code)
		}
	}
	if n := b.accepts.Load(); n != 1 {
		t.Errorf("30 sequential requests opened %d connections at the backend, want 1", n)
	}
	var wg sync.WaitGroup
	for round := 0; round < 5; round++ {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if code := r25UppoolDo(cl, "GET", url+"/slow", ""); code != 200 {
					t.Errorf("parallel GET = %d, want 200", code)
				}
			}()
		}
		wg.Wait()
	}
	if n := b.accepts.Load(); n > 6 {
		t.Errorf("5 rounds of 6 parallel requests opened %d connections, want at most 6", n)
	}
	if g, o := r25UppoolGauge(t, m, b.addr()), b.open(); g != float64(o) {
		t.Errorf("sluice_upstream_connections = %v, backend has %d open", g, o)
	}
	// Idle: closed after upstream_idle (and the sweep).
	waitFor(t, "idle upstream connections closed", 5*time.Second, func() bool { return b.open() == 0 })
	if g := r25UppoolGauge(t, m, b.addr()); g != 0 {
		t.Errorf("after the idle close sluice_upstream_connections = %v, want 0", g)
	}
}

// TestUppoolClosingAnswersNotReused: README, Forwarding: "A
// connection is closed, not reused, after ... a Connection: close
// response or an HTTP/1.0 one without keep-alive". The backend here
// keeps the socket open for a while after such an answer (as a lingering
// close does) and never answers on it again: a request sluice sent on it
// would be lost (a POST then gets 502). Every request must get 200 and
// take a connection of its own; HTTP/1.0 answers with keep-alive are
// reused.
func TestUppoolClosingAnswersNotReused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		reused bool
	}{
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"Close capitalised", "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", false},
		{"keep-alive, close", "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", false},
		{"two lines keep-alive then close", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"two lines close then keep-alive", "HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false},
		{"close naming a field", "HTTP/1.1 200 OK\r\nConnection: close, X-Foo\r\nX-Foo: 1\r\nContent-Length: 2\r\n\r\nok", false},
		{"close chunked", "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"close 204", "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", false},
		{"close tab", "HTTP/1.1 200 OK\r\nConnection:\tclose\t\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.0 close", "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.0 chunked-less 204", "HTTP/1.0 204 No Content\r\n\r\n", false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", true},
		{"HTTP/1.0 Keep-Alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var late atomic.Int64
			b := r25UppoolStart(t, func(c net.Conn, req *http.Request, n int) bool {
				_, _ = io.WriteString(c, tc.answer)
				if tc.reused {
					return true
				}
				// Linger: anything sent now is a request on a connection
				// the answer said would close.
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				var buf [1]byte
				if k, _ := c.Read(buf[:]); k > 0 {
					late.Add(1)
				}
				return false
			})
			px := startProxy(t, r25UppoolYAML([]string{b.addr()}, "retries: { attempts: 1 }\ntimeouts: { response: 3s }\n"))
			cl := testClient(t)
			for i := range 4 {
				method := "POST"
				if i%2 == 1 {
					method = "GET"
				}
				if code := r25UppoolDo(cl, method, "http://"+px.addr+"/", "x"); code != 200 && code != 204 {
					t.Errorf("%s #%d = %d, want the backend's answer", method, i, code)
				}
			}
			if n := late.Load(); n != 0 {
				t.Errorf("%d requests were sent on a connection whose answer closed it", n)
			}
			switch a := b.accepts.Load(); {
			case tc.reused && a != 1:
				t.Errorf("keep-alive answers: %d connections for 4 requests, want 1", a)
			case !tc.reused && a != 4:
				t.Errorf("closing answers: %d connections for 4 requests, want 4", a)
			}
		})
	}
}

// TestUppoolBackendIdleCloseNo502: a backend whose keep-alive
// timeout (30 ms) is far below timeouts.upstream_idle closes idle
// connections all the time. README (Idle upstream connections): the idle
// check finds them before the request goes out, for any method, and an
// idempotent request that meets a close racing it gets one more try; so
// idempotent requests never get a 502. POSTs are counted (a close that
// races the write can fail one, as documented).
func TestUppoolBackendIdleCloseNo502(t *testing.T) {
	srv := &http.Server{
		IdleTimeout: 30 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "ok")
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	m := metrics.New("test")
	var logs logLines
	px := startProxyLogged(t, r25UppoolYAML([]string{ln.Addr().String()}, "retries: { attempts: 1 }\ntimeouts: { upstream_idle: 10s }\n"), m, nil, zerolog.New(&logs))
	defer func() {
		for _, l := range logs.with(t, "upstream attempt failed") {
			t.Logf("failure log: %v", l)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var idemBad, postBad, total atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			defer cl.CloseIdleConnections()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil; i++ {
				time.Sleep(time.Duration(28000+rng.IntN(5000)) * time.Microsecond)
				method := []string{"GET", "PUT", "DELETE", "POST"}[i%4]
				code := r25UppoolDo(cl, method, "http://"+px.addr+"/", "body")
				total.Add(1)
				if code != 200 {
					if method == "POST" {
						postBad.Add(1)
					} else {
						idemBad.Add(1)
						t.Logf("%s = %d", method, code)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests, %d idempotent failed, %d POSTs failed", total.Load(), idemBad.Load(), postBad.Load())
	if idemBad.Load() != 0 {
		t.Errorf("%d idempotent requests failed against a backend closing idle connections, want 0", idemBad.Load())
	}
}

// TestUppoolConnLimitUnderLoadAndReloads: 12 clients loop
// requests against one backend (plus a second one that comes and goes)
// with limits.max_conns_per_backend: 3, while reloads replace the
// backend's upstream client (a new timeouts.response), remove it and add
// it back. The backend never has more than 3 connections open at once
// (counted at each accept, without the ones sluice has closed); clients
// get 200 or the documented 503 at the limit, never anything else; and
// once it is over, sluice_upstream_connections agrees with the backend,
// and the idle ones close.
func TestUppoolConnLimitUnderLoadAndReloads(t *testing.T) {
	slow := func(c net.Conn, req *http.Request, _ int) bool {
		time.Sleep(time.Duration(2+rand.IntN(10)) * time.Millisecond)
		r25UppoolOK(c)
		return true
	}
	b := r25UppoolStart(t, slow)
	other := r25UppoolStart(t, slow)
	m := metrics.New("test")
	cfg := func(addrs []string, resp string) string {
		return r25UppoolYAML(addrs, fmt.Sprintf("limits: { max_conns_per_backend: 3 }\ndrain_timeout: 5s\nretries: { attempts: 2 }\ntimeouts: { response: %s, upstream_idle: 500ms }\n", resp))
	}
	both := []string{b.addr(), other.addr()}
	px := startProxyWith(t, cfg(both, "5s"), m)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	codes := make([]atomic.Int64, 600)
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer cl.CloseIdleConnections()
			for i := 0; ctx.Err() == nil; i++ {
				method := "GET"
				if (w+i)%3 == 0 {
					method = "POST"
				}
				codes[r25UppoolDo(cl, method, "http://"+px.addr+"/", "x")+1].Add(1)
			}
		}()
	}
	for i := 0; ctx.Err() == nil; i++ {
		time.Sleep(40 * time.Millisecond)
		switch i % 4 {
		case 0, 2:
			apply(t, px, cfg(both, fmt.Sprintf("%dms", 5000+i)))
		case 1:
			apply(t, px, cfg([]string{other.addr()}, "5s"))
		case 3:
			apply(t, px, cfg(both, "5s"))
		}
	}
	wg.Wait()
	for c := range codes {
		if n := codes[c].Load(); n > 0 {
			t.Logf("status %d: %d", c-1, n)
			if c-1 != 200 && c-1 != 503 {
				t.Errorf("status %d for %d requests, want 200 or 503", c-1, n)
			}
		}
	}
	for _, x := range []*r25UppoolBackend{b, other} {
		if p := x.peak.Load(); p > 3 {
			t.Errorf("backend %s had %d connections open at once, want at most max_conns_per_backend (3)", x.addr(), p)
		}
		t.Logf("backend %s: %d accepts, %d requests, peak %d", x.addr(), x.accepts.Load(), x.requests.Load(), x.peak.Load())
	}
	apply(t, px, cfg(both, "5s"))
	for _, x := range []*r25UppoolBackend{b, other} {
		g, o := r25UppoolGauge(t, m, x.addr()), x.open()
		if g != float64(o) {
			// The backend may still see connections sluice closed a moment ago.
			time.Sleep(100 * time.Millisecond)
			g, o = r25UppoolGauge(t, m, x.addr()), x.open()
		}
		if g != float64(o) {
			t.Errorf("backend %s: sluice_upstream_connections = %v, backend has %d open", x.addr(), g, o)
		}
	}
	waitFor(t, "idle connections closed", 5*time.Second, func() bool { return b.open() == 0 && other.open() == 0 })
	for _, x := range []*r25UppoolBackend{b, other} {
		if g := r25UppoolGauge(t, m, x.addr()); g != 0 {
			t.Errorf("backend %s: sluice_upstream_connections = %v after the idle close, want 0", x.addr(), g)
		}
	}
}

// dropAll closes every connection the backend has open (a restart that
// keeps the listener).
func (b *r25UppoolBackend) dropAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

// r25UppoolSockets counts this process's open sockets.
func r25UppoolSockets() int {
	es, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range es {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestUppoolChurnLeavesNothing: load through sluice while its
// backends drop every connection (restarts), answer some requests with
// Connection: close, and reloads replace, remove and re-add them. Once
// the load stops and the connections have been idle past
// timeouts.upstream_idle, sluice's sockets and goroutines are back where
// they were before and sluice_upstream_connections says 0.
func TestUppoolChurnLeavesNothing(t *testing.T) {
	answer := func(c net.Conn, req *http.Request, n int) bool {
		if n%5 == 0 {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			return false
		}
		r25UppoolOK(c)
		return true
	}
	b := r25UppoolStart(t, answer)
	other := r25UppoolStart(t, answer)
	m := metrics.New("test")
	cfg := func(addrs []string, resp string) string {
		return r25UppoolYAML(addrs, fmt.Sprintf("limits: { max_conns_per_backend: 4 }\ndrain_timeout: 2s\ntimeouts: { response: %s, upstream_idle: 300ms }\n", resp))
	}
	both := []string{b.addr(), other.addr()}
	var logs logLines
	var bad atomic.Int64
	px := startProxyLogged(t, cfg(both, "5s"), m, nil, zerolog.New(&logs))
	defer func() {
		if bad.Load() > 0 {
			for _, l := range logs.with(t, "upstream attempt failed") {
				t.Logf("failure log: %v", l)
			}
		}
	}()
	baseG, _ := ourGoroutines()
	baseS := r25UppoolSockets()

	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			cl := &http.Client{Timeout: 8 * time.Second, Transport: tr}
			defer tr.CloseIdleConnections()
			for i := 0; ctx.Err() == nil; i++ {
				method := "GET"
				if (w+i)%4 == 0 {
					method = "PUT"
				}
				if code := r25UppoolDo(cl, method, "http://"+px.addr+"/", "x"); code != 200 && code != 503 {
					bad.Add(1)
					t.Logf("%s = %d", method, code)
				}
			}
		}()
	}
	for i := 0; ctx.Err() == nil; i++ {
		time.Sleep(50 * time.Millisecond)
		switch i % 6 {
		case 0:
			b.dropAll()
		case 1:
			apply(t, px, cfg(both, fmt.Sprintf("%dms", 5000+i)))
		case 2:
			other.dropAll()
		case 3:
			apply(t, px, cfg([]string{other.addr()}, "5s"))
		case 4:
			apply(t, px, cfg(both, "5s"))
		}
	}
	wg.Wait()
	apply(t, px, cfg(both, "5s"))
	// (A request in flight on a connection a restart drops may break
	// twice and get 502: a second break counts as a reset. Only logged.)
	t.Logf("%d idempotent requests got neither 200 nor 503", bad.Load())
	// Idle past upstream_idle: every upstream connection closes; the
	// clients' transports have closed theirs.
	waitFor(t, "the backends' connections closed", 5*time.Second, func() bool { return b.open() == 0 && other.open() == 0 })
	var s int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s = r25UppoolSockets(); s <= baseS {
			break
		}
	}
	if s > baseS {
		t.Errorf("%d sockets open after the churn, %d before", s, baseS)
	}
	checkChurnGoroutines(t, baseG)
	for _, x := range []*r25UppoolBackend{b, other} {
		if g := r25UppoolGauge(t, m, x.addr()); g != 0 {
			t.Errorf("backend %s: sluice_upstream_connections = %v, want 0", x.addr(), g)
		}
	}
}

// TestUppoolRemovalClosesConns: with timeouts.upstream_idle far
// away (30 s), a reload that removes a backend closes its idle
// connections at once, and the one busy with a request as that request
// ends (README, drain_timeout; Draining); a reload that only changes the
// upstream settings closes the old client's idle connections at once too.
// sluice_upstream_connections follows.
func TestUppoolRemovalClosesConns(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	b := r25UppoolStart(t, func(c net.Conn, req *http.Request, _ int) bool {
		switch req.URL.Path {
		case "/hold":
			<-release
		case "/slowish":
			time.Sleep(50 * time.Millisecond)
		}
		r25UppoolOK(c)
		return true
	})
	other := r25UppoolStart(t, func(c net.Conn, req *http.Request, _ int) bool { r25UppoolOK(c); return true })
	m := metrics.New("test")
	cfg := func(addrs []string, resp string) string {
		return r25UppoolYAML(addrs, "drain_timeout: 5s\ntimeouts: { upstream_idle: 30s, response: "+resp+" }\n")
	}
	px := startProxyWith(t, cfg([]string{b.addr()}, "5s"), m)
	cl := testClient(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r25UppoolDo(cl, "GET", "http://"+px.addr+"/slowish", "")
		}()
	}
	wg.Wait()
	if o := b.open(); o < 1 {
		t.Fatalf("backend has %d connections open after 4 requests, want some", o)
	}
	// A settings reload: the old client's idle connections close now.
	apply(t, px, cfg([]string{b.addr()}, "6s"))
	waitFor(t, "the replaced client's idle connections closed", 3*time.Second, func() bool { return b.open() == 0 })
	if g := r25UppoolGauge(t, m, b.addr()); g != 0 {
		t.Errorf("after a settings reload sluice_upstream_connections = %v, want 0", g)
	}
	// One busy, some idle; then the backend is removed.
	done := make(chan int, 1)
	go func() {
		done <- r25UppoolDo(&http.Client{Timeout: 8 * time.Second}, "GET", "http://"+px.addr+"/hold", "")
	}()
	waitFor(t, "the held request at the backend", 3*time.Second, func() bool { return b.requests.Load() == 5 })
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r25UppoolDo(cl, "GET", "http://"+px.addr+"/slowish", "")
		}()
	}
	wg.Wait()
	idle := b.open() - 1
	apply(t, px, cfg([]string{other.addr()}, "6s"))
	waitFor(t, "idle connections closed on removal", 3*time.Second, func() bool { return b.open() == 1 })
	t.Logf("%d idle connections closed on removal", idle)
	if g := r25UppoolGauge(t, m, b.addr()); g != 1 {
		t.Errorf("draining with one busy connection: sluice_upstream_connections = %v, want 1", g)
	}
	free()
	if code := <-done; code != 200 {
		t.Errorf("held request = %d, want 200", code)
	}
	waitFor(t, "the busy connection closed after its request", 3*time.Second, func() bool { return b.open() == 0 })
}

// TestUppoolConnsGaugeSkipsPendingConnects: a backend whose listen
// queue is full drops SYNs, so sluice's connects hang until
// timeouts.connect. Four requests at once each get 504 within it, each
// counted as kind="connect" (dialing "timed out"). While the connects hang, no
// connection to the backend is open, but sluice_upstream_connections
// ("Open connections to each backend, idle or busy") reports one per
// hanging connect.
func TestUppoolConnsGaugeSkipsPendingConnects(t *testing.T) {
	ln, _ := fullBacklogListener(t)
	addr := ln.Addr().String()
	m := metrics.New("test")
	px := startProxyWith(t, r25UppoolYAML([]string{addr}, "retries: { attempts: 1 }\ntimeouts: { connect: 800ms, response: 2s }\n"), m)
	codes := make(chan int, 4)
	for range 4 {
		go func() {
			codes <- r25UppoolDo(&http.Client{Timeout: 8 * time.Second}, "GET", "http://"+px.addr+"/", "")
		}()
	}
	// The four connects are under way (each took its slot at once).
	time.Sleep(300 * time.Millisecond)
	during := r25UppoolGauge(t, m, addr)
	for range 4 {
		if code := <-codes; code != http.StatusGatewayTimeout {
			t.Errorf("request to a backend that drops SYNs = %d, want 504", code)
		}
	}
	if n := gatherCounts(t, m, "sluice_upstream_errors_total")[fmt.Sprintf("pool=%q,backend=%q,kind=%q", "p", addr, "connect")]; n != 4 {
		t.Errorf("sluice_upstream_errors_total{kind=connect} = %v, want 4", n)
	}
	if g := r25UppoolGauge(t, m, addr); g != 0 {
		t.Errorf("after the connects timed out sluice_upstream_connections = %v, want 0", g)
	}
	if during != 0 {
		t.Errorf("while 4 connects hang (no connection made) sluice_upstream_connections = %v, want 0", during)
	}
}

// TestUppoolClientCloseKeepsUpstream: README, Forwarding: "A
// client's Connection: close closes the client connection after the
// response, not the upstream one", and the upstream request goes as
// keep-alive HTTP/1.1 whatever the client spoke. Ten clients that each
// send one request and close (Connection: close, or HTTP/1.0) share one
// upstream connection.
func TestUppoolClientCloseKeepsUpstream(t *testing.T) {
	b := r25UppoolStart(t, func(c net.Conn, req *http.Request, _ int) bool {
		r25UppoolOK(c)
		return true
	})
	px := startProxy(t, r25UppoolYAML([]string{b.addr()}, ""))
	for i := range 10 {
		c, br := dialProxy(t, px.addr)
		req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		if i%2 == 1 {
			req = "GET / HTTP/1.0\r\nHost: x\r\n\r\n"
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d = %d, want 200", i, resp.StatusCode)
		}
		c.Close()
	}
	if n := b.accepts.Load(); n != 1 {
		t.Errorf("10 closing client requests opened %d upstream connections, want 1", n)
	}
}

// TestUppoolRestartPostBodies: README (Idle upstream
// connections): a backend restart, which leaves every idle connection to
// it dead, costs no request a 502, POST included: the idle check finds
// them before anything is sent (the 8th try dials). Here with 10 idle
// connections (more than the 7 tries) and POSTs whose bodies take each
// write path: a short body through the write buffer, one of 2 KiB sent
// apart from the head, a chunked one; also when the backend sends a 408
// as it drops each idle connection.
func TestUppoolRestartPostBodies(t *testing.T) {
	for _, with408 := range []bool{false, true} {
		t.Run(fmt.Sprintf("408=%v", with408), func(t *testing.T) {
			b := r25UppoolStart(t, func(c net.Conn, req *http.Request, _ int) bool {
				if req.URL.Path == "/slow" {
					time.Sleep(50 * time.Millisecond)
				}
				r25UppoolOK(c)
				return true
			})
			px := startProxy(t, r25UppoolYAML([]string{b.addr()}, "retries: { attempts: 1 }\ntimeouts: { upstream_idle: 30s }\n"))
			cl := testClient(t)
			for _, body := range []string{"x", strings.Repeat("y", 2048), ""} {
				var wg sync.WaitGroup
				for range 10 {
					wg.Add(1)
					go func() { defer wg.Done(); r25UppoolDo(cl, "GET", "http://"+px.addr+"/slow", "") }()
				}
				wg.Wait()
				waitFor(t, "10 idle connections", 3*time.Second, func() bool { return b.open() >= 10 })
				b.mu.Lock()
				for c := range b.conns {
					if with408 {
						_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
					}
					c.Close()
				}
				b.mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				var code int
				if body == "" {
					req, _ := http.NewRequest("POST", "http://"+px.addr+"/", io.MultiReader(strings.NewReader("chunk"), strings.NewReader("ed")))
					req.ContentLength = -1
					resp, err := cl.Do(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
				} else {
					code = r25UppoolDo(cl, "POST", "http://"+px.addr+"/", body)
				}
				if code != 200 {
					t.Errorf("POST (%d-byte body, 0 = chunked) after a restart with 10 idle connections = %d, want 200", len(body), code)
				}
			}
		})
	}
}
