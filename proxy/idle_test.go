package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// misbehavingBackend is an HTTP/1.1 backend written on bare TCP, so that it can
// misbehave on purpose: after answering, afterAnswer may write more or
// close the connection.
type misbehavingBackend struct {
	ln       net.Listener
	requests atomic.Int64
	conns    *atomic.Int64
	mu       sync.Mutex
	seen     []string // request lines, in arrival order
}

// startMisbehavingBackend answers every request with 200 and a body naming its
// path; afterAnswer (may be nil) runs on the connection after each answer.
func startMisbehavingBackend(t *testing.T, afterAnswer func(c net.Conn, requestLine string)) *misbehavingBackend {
	t.Helper()
	b := &misbehavingBackend{}
	b.ln, b.conns = serveKeptAlive(t, func(c net.Conn, req *http.Request) {
		line := req.Method + " " + req.URL.Path
		b.requests.Add(1)
		b.mu.Lock()
		b.seen = append(b.seen, line)
		b.mu.Unlock()
		body := "answer to " + line
		if req.Method == "HEAD" {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		} else {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		if afterAnswer != nil {
			afterAnswer(c, line)
		}
	})
	return b
}

// serveKeptAlive reads requests on each connection it accepts, one after
// another with 5 s for each exchange, and has answer write the
// response (the request body already read); it counts the connections.
func serveKeptAlive(t *testing.T, answer func(c net.Conn, req *http.Request)) (net.Listener, *atomic.Int64) {
	t.Helper()
	conns := new(atomic.Int64)
	ln := serveRaw(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			answer(c, req)
		}
	})
	return ln, conns
}

// rawAnswer is an answer for serveKeptAlive that writes raw as it is.
func rawAnswer(raw string) func(net.Conn, *http.Request) {
	return func(c net.Conn, _ *http.Request) { _, _ = io.WriteString(c, raw) }
}

func (b *misbehavingBackend) addr() string { return b.ln.Addr().String() }

// rawDo sends one request on a new client connection and returns the
// response's status and body.
func rawDo(t *testing.T, proxyAddr, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+proxyAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIdleConnectionChecked: a kept-alive upstream connection is checked
// before a request is written on it. Bytes the backend sent unasked while
// it was idle (here a whole second response after a HEAD, the way a
// response-splitting or buggy backend does) must never reach the next
// client; a connection the backend closed while idle must not fail the
// next request, even a POST, which goes out once on a new connection.
func TestIdleConnectionChecked(t *testing.T) {
	t.Run("unsolicited bytes", func(t *testing.T) {
		b := startMisbehavingBackend(t, func(c net.Conn, line string) {
			if strings.HasPrefix(line, "HEAD") {
				time.Sleep(50 * time.Millisecond) // after sluice has read the answer
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 8\r\n\r\nsmuggled")
			}
		})
		m := metrics.New("test")
		px := startProxyWith(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\n", b.addr()), m)
		if code, _ := rawDo(t, px.addr, "HEAD", "/first", ""); code != 200 {
			t.Fatalf("HEAD = %d, want 200", code)
		}
		time.Sleep(200 * time.Millisecond) // the unasked response has arrived
		for i := range 3 {
			code, body := rawDo(t, px.addr, "GET", fmt.Sprintf("/victim%d", i), "")
			if code != 200 || body != fmt.Sprintf("answer to GET /victim%d", i) {
				t.Fatalf("GET /victim%d = %d %q, want the backend's answer to it", i, code, body)
			}
		}
		idle := 0.0
		for k, v := range gatherCounts(t, m, "sluice_upstream_errors_total") {
			if strings.Contains(k, `kind="idle"`) {
				idle += v
			}
		}
		if idle != 1 {
			t.Errorf(`sluice_upstream_errors_total{kind="idle"} = %v, want 1 (the connection with the unasked response)`, idle)
		}
	})
	t.Run("closed while idle", func(t *testing.T) {
		b := startMisbehavingBackend(t, func(c net.Conn, line string) {
			time.Sleep(20 * time.Millisecond)
			c.Close() // a keep-alive timeout, without saying Connection: close
		})
		px := startProxy(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\nretries: {attempts: 1}\n", b.addr()))
		for i := range 3 {
			if i > 0 {
				time.Sleep(100 * time.Millisecond) // the close has arrived
			}
			code, body := rawDo(t, px.addr, "POST", fmt.Sprintf("/p%d", i), "payload")
			if code != 200 || body != fmt.Sprintf("answer to POST /p%d", i) {
				t.Fatalf("POST /p%d = %d %q, want 200 from the backend", i, code, body)
			}
		}
		if got := b.requests.Load(); got != 3 {
			t.Errorf("backend saw %d requests, want 3 (each POST once)", got)
		}
	})
}
