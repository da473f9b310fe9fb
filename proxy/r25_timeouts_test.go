package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

// TestTimeoutsStrayCRLFAfterRequestAnsweredAtOnce: a request
// followed in the same write by an empty line (a stray CRLF, which RFC
// 9112 §2.2 asks a server to ignore before a request line; older clients
// send one after a POST body) is answered at once, not held until
// timeouts.client_read passes, for answers short, lent (8-64 KiB) and
// spliced (300 KiB). (passes: a regression test)
func TestTimeoutsStrayCRLFAfterRequestAnsweredAtOnce(t *testing.T) {
	b := startBackend(t, "b1", sizedBody)
	px := startProxy(t, "timeouts: { client_read: 3s, idle: 20s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	for _, tt := range []struct{ name, req string }{
		{"GET", "GET /?n=2 HTTP/1.1\r\nHost: test\r\n\r\n\r\n"},
		{"GET 8KiB", "GET /?n=8192 HTTP/1.1\r\nHost: test\r\n\r\n\r\n"},
		{"GET 64KiB", "GET /?n=65536 HTTP/1.1\r\nHost: test\r\n\r\n\r\n"},
		{"GET 300KiB", "GET /?n=307200 HTTP/1.1\r\nHost: test\r\n\r\n\r\n"},
		{"POST", "POST /?n=2 HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody\r\n"},
		{"POST 64KiB", "POST /?n=65536 HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody\r\n"},
		{"POST 2KiB body 64KiB", "POST /?n=65536 HTTP/1.1\r\nHost: test\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("b", 2048) + "\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			// Well within client_read (3 s): the answer is due now.
			_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer 1.5 s after the request (client_read 3s): %v", err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			// The connection then serves the next request.
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "GET /?n=2 HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err = http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("next request: %v, %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// TestTimeoutsExpectContinueBoundedByClientRead: README,
// timeouts.client_read: "reading a whole client request (a new
// connection's first request from when it opens ...; a slower one gets
// 408)". A request with Expect: 100-continue whose head is trickled for
// most of client_read, and whose body then is trickled for most of
// client_read again, takes about 1.4 × client_read to arrive: it must get
// 408, not be read under a second client_read of its own that starts at
// the 100 Continue.
func TestTimeoutsExpectContinueBoundedByClientRead(t *testing.T) {
	b := startBackend(t, "b1", nil)
	const clientRead = 2 * time.Second
	px := startProxy(t, "timeouts: { client_read: 2s, idle: 20s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(9 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 8\r\n"); err != nil {
		t.Fatal(err)
	}
	// The head, a line every 100 ms, for 1.4 s (70% of client_read).
	for time.Since(start) < clientRead*7/10 {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
			t.Fatalf("head cut after %v: %v", time.Since(start), err)
		}
	}
	if _, err := io.WriteString(c, "\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("after the head: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Skipf("the head alone got %d after %v (a loaded machine): nothing to check", resp.StatusCode, time.Since(start))
	}
	bodyStart := time.Now()
	// The body, a byte every 175 ms, 8 bytes: 1.4 s more.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 8 {
			time.Sleep(175 * time.Millisecond)
			if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
				return
			}
		}
	}()
	resp, err = http.ReadResponse(br, nil)
	took := time.Since(start)
	<-done
	if err != nil {
		t.Fatalf("after the body: %v (%v)", err, took)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("a request whose head and body took %v in all (client_read %v; body %v after the 100 Continue) got %d, want 408",
			took, clientRead, time.Since(bodyStart), resp.StatusCode)
	}
}

// TestTimeoutsReloadResponseOldAndNew: a reload that changes
// timeouts.response applies to requests that start after it, and a
// request in flight keeps the timeout it began with (README, Hot reload:
// "requests in flight finish on the snapshot they started with"). Order,
// not timing: with response 4s a request is held by a stalled backend;
// a reload lowers it to 300ms, and a second request to the same stalled
// backend gets 504 while the first is still waiting; the first then gets
// its 504 too. A reload raising it again lets a backend answering after
// 800 ms through (200). (passes: a regression test)
func TestTimeoutsReloadResponseOldAndNew(t *testing.T) {
	var stalled atomic.Int64
	be := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/stall":
				stalled.Add(1)
				_, _ = io.Copy(io.Discard, br) // until the proxy closes it (or serveRaw's 5 s)
				return
			case "/slow":
				time.Sleep(800 * time.Millisecond)
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	yaml := func(response string) string {
		return "timeouts: { response: " + response + ", client_read: 5s, idle: 10s }\nretries: { attempts: 1 }\n" +
			"routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: " + be.Addr().String() + " }\n"
	}
	px := startProxy(t, yaml("4s"))
	apply := func(response string) {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(yaml(response)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := px.ctrl.Apply(ctx, cfg); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	status := func(br *bufio.Reader) int {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return -1
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	c1, br1 := dialProxy(t, px.addr)
	_ = c1.SetDeadline(time.Now().Add(9 * time.Second))
	if _, err := io.WriteString(c1, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	first := make(chan int, 1)
	go func() { first <- status(br1) }()
	for end := time.Now().Add(3 * time.Second); stalled.Load() < 1; {
		if time.Now().After(end) {
			t.Fatal("the first request never reached the backend")
		}
		time.Sleep(5 * time.Millisecond)
	}
	apply("300ms")

	c2, br2 := dialProxy(t, px.addr)
	_ = c2.SetDeadline(time.Now().Add(9 * time.Second))
	if _, err := io.WriteString(c2, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if code := status(br2); code != http.StatusGatewayTimeout {
		t.Fatalf("a request after the reload to 300ms got %d, want 504", code)
	}
	select {
	case code := <-first:
		t.Errorf("the request in flight before the reload was answered %d before the one after it: it took the new timeout, want the 4s it began with", code)
	default:
		if code := <-first; code != http.StatusGatewayTimeout {
			t.Errorf("the request in flight before the reload got %d, want 504 (at its own 4s)", code)
		}
	}

	apply("3s")
	c3, br3 := dialProxy(t, px.addr)
	if _, err := io.WriteString(c3, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if code := status(br3); code != http.StatusOK {
		t.Errorf("after a reload raising timeouts.response to 3s, a backend answering in 800 ms got %d, want 200", code)
	}
}

// TestTimeoutsEmptyLinesDoNotHoldConn: a kept-alive connection
// (and a new one) on which the client sends only empty lines (CRLF,
// which a server skips before a request line) every 50 ms is ended at
// client_read from the first of them (500 ms), not kept open for as long
// as they come (idle is 20 s): no request ever begins. (passes: a
// regression test)
func TestTimeoutsEmptyLinesDoNotHoldConn(t *testing.T) {
	b := startBackend(t, "b1", nil)
	px := startProxy(t, "timeouts: { client_read: 500ms, idle: 20s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	for _, kept := range []bool{false, true} {
		name := "new connection"
		if kept {
			name = "kept-alive connection"
		}
		t.Run(name, func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			_ = c.SetDeadline(time.Now().Add(9 * time.Second))
			if kept {
				getOn(t, c, br, "/")
			}
			stop := make(chan struct{})
			sent := make(chan int, 1)
			go func() {
				n := 0
				defer func() { sent <- n }()
				for end := time.Now().Add(6 * time.Second); time.Now().Before(end); n++ {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := io.WriteString(c, "\r\n"); err != nil {
						return
					}
				}
			}()
			got, err := io.ReadAll(br) // until the proxy closes
			close(stop)
			n := <-sent
			if err != nil {
				t.Fatalf("connection still open after %d empty lines: %v (read %.60q)", n, err, got)
			}
			if n >= 110 {
				t.Errorf("the connection lasted %d empty lines (50 ms apart), want it ended at client_read (500 ms)", n)
			}
			t.Logf("ended after %d empty lines with %.40q", n, got)
		})
	}
}
