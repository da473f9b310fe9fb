package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// busyClients keeps keep-alive connections busy with POSTs sent back to
// back, to the address in addr (which the test may change), and counts
// what a graceful stop must never cause: a request written in full on a
// connection that then ends without its response. A POST is not
// idempotent, so a client may not send it again; a connection the proxy
// closes after a response saying "Connection: close" is fine, and so is a
// dial that finds nothing listening.
type busyClients struct {
	addr     atomic.Pointer[string]
	answered atomic.Int64
	lost     atomic.Int64
	mu       sync.Mutex
	losses   []string
}

func (b *busyClients) run(ctx context.Context, n int) (wait func()) {
	return runClients(ctx, n, b.conn)
}

// runClients runs n clients, each calling conn (with its number) again
// and again until ctx ends; wait waits for them.
func runClients(ctx context.Context, n int, conn func(ctx context.Context, client int)) (wait func()) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				conn(ctx, i)
			}
		}()
	}
	return wg.Wait
}

// conn dials once and sends requests on the connection until it ends.
func (b *busyClients) conn(ctx context.Context, client int) {
	c, err := net.DialTimeout("tcp", *b.addr.Load(), time.Second)
	if err != nil {
		time.Sleep(5 * time.Millisecond)
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ctx.Err() == nil; n++ {
		body := fmt.Sprintf("client %d request %d", client, n)
		req := fmt.Sprintf("POST /post HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			// The request did not go out whole: the connection had
			// ended before it (a close the client could not see yet).
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.lose(fmt.Sprintf("client %d request %d on %s: %v", client, n, c.RemoteAddr(), err))
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.lose(fmt.Sprintf("client %d request %d: status %d, body %v", client, n, resp.StatusCode, err))
			return
		}
		b.answered.Add(1)
		if resp.Close {
			return
		}
	}
}

func (b *busyClients) lose(what string) {
	b.lost.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.losses) < 5 {
		b.losses = append(b.losses, what)
	}
}

// TestGracefulStopLosesNoRequest: a listener moved by a reload, and a
// shutdown, under keep-alive connections busy with back-to-back POSTs.
// Every request written gets its answer; the connections end after an
// answer that says "Connection: close".
func TestGracefulStopLosesNoRequest(t *testing.T) {
	tests := []struct {
		name string
		stop func(t *testing.T, path, listen2 string, render func(string) string, clients *busyClients, cancel context.CancelFunc)
	}{
		{"listener moved", func(t *testing.T, path, listen2 string, render func(string) string, clients *busyClients, _ context.CancelFunc) {
			clients.addr.Store(&listen2)
			replaceFile(t, path, render(listen2))
		}},
		{"shutdown", func(t *testing.T, _, _ string, _ func(string) string, _ *busyClients, cancel context.CancelFunc) {
			cancel()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
			render := func(listen string) string {
				return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nshutdown_timeout: 5s\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", listen, admin, up.addr)
			}
			path := writeConfig(t, render(listen1))
			ctx, cancel := context.WithCancel(context.Background())
			exit := make(chan int, 1)
			go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, io.Discard) }()
			defer func() {
				cancel()
				select {
				case <-exit:
				case <-time.After(10 * time.Second):
					t.Error("sluice did not stop")
				}
			}()
			waitReady(t, "http://"+admin+"/readyz")

			clients := &busyClients{}
			clients.addr.Store(&listen1)
			loadCtx, stopLoad := context.WithCancel(context.Background())
			wait := clients.run(loadCtx, 16)
			waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 200 })
			before := clients.answered.Load()
			tt.stop(t, path, listen2, render, clients, cancel)
			time.Sleep(700 * time.Millisecond)
			stopLoad()
			wait()

			if n := clients.lost.Load(); n > 0 {
				t.Errorf("%d requests written got no answer, e.g.\n%s", n, strings.Join(clients.losses, "\n"))
			}
			if clients.answered.Load() <= before {
				t.Errorf("no request answered after the stop began (%d before)", before)
			}
		})
	}
}

// replaceFile replaces the file at path by rename, as editors do.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestServerStopReportsNoError: a clean stop of an idle server reports no
// error. Drain closes the listener, and fasthttp's ShutdownWithContext
// closes it again (closeListenersLocked) and returns that second close's
// "use of closed network connection" once no connection is left.
func TestServerStopReportsNoError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	s := startServer(srv, netconn.NewListener(ln), zerolog.Nop(), "test")
	// One request, so that Serve is surely running.
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.stop(ctx); err != nil {
		t.Errorf("stop() = %v, want nil", err)
	}
}

// startStoppable runs sluice in this process with log level warn; it
// returns the proxy and admin addresses, the log, and stop, which cancels
// the run and returns how long sluice took to stop.
func startStoppable(t *testing.T, shutdownTimeout string, backendAddr string) (string, string, *syncBuffer, func() time.Duration) {
	t.Helper()
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: warn, format: json}\nshutdown_timeout: %s\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, admin, shutdownTimeout, backendAddr))
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, stderr) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-exit
		}
	})
	waitReady(t, "http://"+admin+"/readyz") // leaves an idle keep-alive admin connection, as a prober would
	return listen, admin, stderr, func() time.Duration {
		stopped = true
		start := time.Now()
		cancel()
		select {
		case <-exit:
		case <-time.After(20 * time.Second):
			t.Fatal("sluice did not stop")
		}
		return time.Since(start)
	}
}

// idleConns opens n keep-alive connections to addr, each with one GET
// answered, and leaves them idle.
func idleConns(t *testing.T, addr string, n int) []*keptConn {
	t.Helper()
	var cs []*keptConn
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		kc := &keptConn{c: c, br: bufio.NewReader(c)}
		if _, err := kc.get(); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, kc)
	}
	return cs
}

type keptConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (k *keptConn) get() (*http.Response, error) {
	_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(k.c, "GET /x HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// TestShutdownLogsNoTimeout: a shutdown with nothing in flight does not
// log "shutdown timed out with requests in flight".
func TestShutdownLogsNoTimeout(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	_, _, stderr, stop := startStoppable(t, "5s", up.addr)
	took := stop()
	if strings.Contains(stderr.String(), "shutdown timed out") {
		t.Errorf("clean shutdown (%v) logged a timeout:\n%s", took, grepLines(stderr.String(), "shutdown timed out"))
	}
}

// TestShutdownWithIdleConns: idle keep-alive connections, on the proxy
// listener and on the admin one (a load balancer's prober), do not hold a
// shutdown: it ends once the busy connections have had their chance, not
// at shutdown_timeout. (The admin server does not settle: its answers do
// not say "Connection: close", so its count could not fall.)
func TestShutdownWithIdleConns(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin, stderr, stop := startStoppable(t, "10s", up.addr)
	idleConns(t, listen, 4)
	c, err := net.DialTimeout("tcp", admin, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kc := &keptConn{c: c, br: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(kc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("admin answer closes the connection")
	}
	if took := stop(); took > 5*time.Second {
		t.Errorf("shutdown with idle keep-alive connections took %v, want well under shutdown_timeout (10s)", took)
	}
	if strings.Contains(stderr.String(), "shutdown timed out") {
		t.Errorf("shutdown logged a timeout with nothing in flight:\n%s", grepLines(stderr.String(), "shutdown timed out"))
	}
}

// TestShutdownUnderTrickle: many pooled keep-alive connections (a load
// balancer's upstream pool) under a light load, one request every 150 ms
// on the next connection. Each answer says "Connection: close", so the
// open count falls every 150 ms and never stays put for settleQuiet: the
// wait for busy connections must still end (settleMax, half the budget),
// leaving the rest of shutdown_timeout to the requests in flight, and no
// timeout may be reported with nothing in flight.
func TestShutdownUnderTrickle(t *testing.T) {
	for _, tt := range []struct {
		name, timeout string
		conns         int
	}{
		{"long timeout", "10s", 60},
		{"short timeout", "2s", 30},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen, _, stderr, stop := startStoppable(t, tt.timeout, up.addr)
			conns := idleConns(t, listen, tt.conns)
			trickle, stopTrickle := context.WithCancel(context.Background())
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				time.Sleep(20 * time.Millisecond)
				for _, k := range conns {
					_, _ = k.get()
					select {
					case <-trickle.Done():
						return
					case <-time.After(150 * time.Millisecond):
					}
				}
			}()
			took := stop()
			stopTrickle()
			<-trickled
			timeout, _ := time.ParseDuration(tt.timeout)
			if took > timeout*3/4 {
				t.Errorf("shutdown under a light load on %d pooled connections took %v, want well under shutdown_timeout (%v)", tt.conns, took, timeout)
			}
			if strings.Contains(stderr.String(), "shutdown timed out") {
				t.Errorf("shutdown logged a timeout with nothing in flight:\n%s", grepLines(stderr.String(), "shutdown timed out"))
			}
		})
	}
}

// TestRefusedConnCountedOut: a connection fasthttp refuses over its
// Concurrency (limits.max_client_conns) is closed by fasthttp, and so
// counted out of Listener.Open.
func TestRefusedConnCountedOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := netconn.NewListener(ln)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, Concurrency: 1, CloseOnShutdown: true}
	s := startServer(srv, nl, zerolog.Nop(), "test")
	idleConns(t, s.addr, 1)
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "503") {
		t.Fatalf("second connection got %q, want a 503", b)
	}
	waitUntil(t, "refused connection counted out", 2*time.Second, func() bool { return nl.Open() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.stop(ctx)
	if n := nl.Open(); n != 0 {
		t.Errorf("Open() after stop = %d, want 0", n)
	}
}

// TestStopSlowAndPipelined: during a stop, a request in flight on a
// slow backend gets its 200 with "Connection: close", and two pipelined
// requests sent on an idle connection after the stop began get the first
// answered with "Connection: close" (the client then knows the second was
// not served).
func TestStopSlowAndPipelined(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, _, _, stop := startStoppable(t, "5s", up.addr)
	conns := idleConns(t, listen, 2)
	slow := make(chan *http.Response, 1)
	go func() {
		_ = conns[0].c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conns[0].c, "GET /slow/x HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(conns[0].br, nil)
		if err != nil {
			t.Errorf("slow request: %v", err)
			slow <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp
	}()
	time.Sleep(100 * time.Millisecond)
	pipelined := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // the stop has begun
		k := conns[1]
		_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
		body := strings.Repeat("b", 100<<10)
		req := fmt.Sprintf("POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if _, err := io.WriteString(k.c, req+req); err != nil {
			pipelined <- err
			return
		}
		resp, err := http.ReadResponse(k.br, nil)
		if err != nil {
			pipelined <- err
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !resp.Close {
			pipelined <- fmt.Errorf("first pipelined answer: status %d, close %v", resp.StatusCode, resp.Close)
			return
		}
		pipelined <- nil
	}()
	took := stop()
	if resp := <-slow; resp != nil && (resp.StatusCode != 200 || !resp.Close) {
		t.Errorf("slow request: status %d, close %v; want 200, close", resp.StatusCode, resp.Close)
	}
	if err := <-pipelined; err != nil {
		t.Errorf("pipelined: %v", err)
	}
	t.Logf("stop took %v", took)
}
