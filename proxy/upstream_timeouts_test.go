package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Upstream timeouts against slow backends.

// fullBacklogListener is a listener on 127.0.0.1 whose accept queue holds
// one connection (listen backlog 0), already taken by a connection that
// nobody accepts yet: a SYN that comes now is dropped by the kernel and
// its connect retransmits it after the initial RTO (1 s), or gives up
// after timeouts.connect. release accepts (and closes) that first
// connection, making room for one more.
func fullBacklogListener(t *testing.T) (ln net.Listener, release func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "backlog0")
	ln, err = net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	filler, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	var once sync.Once
	return ln, func() {
		once.Do(func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		})
	}
}

// serveOKAfter answers every request on every connection ln accepts,
// after first (when not nil) has run, with 200 "ok", until the test ends.
func serveOKAfter(t *testing.T, ln net.Listener, first func()) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if first != nil {
			first()
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					var req fasthttp.Request
					if err := req.Read(br); err != nil {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// TestResponseTimeoutStartsAfterDial: timeouts.connect and
// timeouts.response are separate budgets (README: "each try gets its own
// timeouts.connect and timeouts.response", worst case "connect +
// response"; 504 when "the exchange (request written, response read) did
// not finish within timeouts.response, or the connect did not finish
// within timeouts.connect").
//
// A connect that takes 1 s (a SYN dropped by a full accept queue,
// retransmitted after the initial RTO) with connect: 10s and response:
// 500ms got a 504 without the request ever being written, from a backend
// that answers at once: the exchange's deadline counted from before the
// dial (found by review). It gets 200.
func TestResponseTimeoutStartsAfterDial(t *testing.T) {
	ln, release := fullBacklogListener(t)
	px := startProxy(t, fmt.Sprintf("timeouts: { connect: 10s, response: 500ms }\nretries: { attempts: 1 }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	// Room in the accept queue once the proxy's first SYN was dropped;
	// its retransmission, about 1 s after it, is taken.
	serveOKAfter(t, ln, func() { time.Sleep(300 * time.Millisecond); release() })
	c, br := dialProxy(t, px.addr)
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if took < 700*time.Millisecond {
		t.Skipf("answered %d after %v: the kernel did not drop the first SYN, nothing to test", resp.StatusCode, took)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after a connect of about %v (connect: 10s), the answer is %d %q; want 200: the connect's time was taken out of timeouts.response (500ms)", took, resp.StatusCode, strings.TrimSpace(string(body)))
	}
}

// TestConnectTimeoutFullBacklog: a backend whose accept queue stays full is
// given up after timeouts.connect, with 504, retried once (attempts: 2)
// on its one backend, so within about 2 × connect; the proxy then still
// answers from it once it accepts again.
func TestConnectTimeoutFullBacklog(t *testing.T) {
	ln, release := fullBacklogListener(t)
	px := startProxy(t, fmt.Sprintf("timeouts: { connect: 300ms, response: 2s }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	c, br := dialProxy(t, px.addr)
	start := time.Now()
	a := hbDo(c, br, "GET", "/")
	took := time.Since(start)
	if a.err != nil || a.status != http.StatusGatewayTimeout {
		t.Fatalf("got %d %q %v, want 504", a.status, a.body, a.err)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("504 after %v, want about 2 × connect (600ms)", took)
	}
	serveOKAfter(t, ln, release)
	if a := hbDo(c, br, "GET", "/"); a.err != nil || a.status != 200 || a.body != "ok" {
		t.Fatalf("once the backend accepts: %d %q %v, want 200 ok", a.status, a.body, a.err)
	}
}
