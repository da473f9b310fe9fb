package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRetryByMethod: a backend that reads a whole request and
// then resets the connection, before any byte of an answer, on a new
// connection each time, gets an idempotent request (GET, HEAD, OPTIONS,
// TRACE, PUT, DELETE: README, Retries) retried on the other backend, so
// that each backend sees it once; any other method (POST, PATCH, the
// WebDAV methods, a lower-case "get", which RFC 9110 §9.1 makes another
// method than GET) reaches one backend once and gets 502, with and
// without a body, and a retry carries the body whole. (Coverage: behaves right; TestNoRetryOnceReceived
// covers POST and GET only.)
func TestRetryByMethod(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{} // request line -> times received
	handle := func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		mu.Lock()
		seen[req.Method+" "+req.RequestURI+" "+string(body)]++
		mu.Unlock()
		_ = c.(*net.TCPConn).SetLinger(0)
	}
	a, b := serveRaw(t, handle), serveRaw(t, handle)
	px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
timeouts: { response: 2s }
`, a.Addr(), b.Addr()))
	for _, tt := range []struct {
		method string
		sends  int
	}{
		{"GET", 2}, {"HEAD", 2}, {"OPTIONS", 2}, {"TRACE", 2}, {"PUT", 2}, {"DELETE", 2},
		{"POST", 1}, {"PATCH", 1}, {"PROPFIND", 1}, {"MKCOL", 1}, {"LOCK", 1}, {"get", 1}, {"put", 1},
	} {
		for _, body := range []string{"", "abc"} {
			target := fmt.Sprintf("/%s-%d", strings.ToLower(tt.method), len(body))
			raw := tt.method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			if body != "" {
				raw += fmt.Sprintf("Content-Length: %d\r\n", len(body))
			}
			raw += "\r\n" + body
			c, br := dialProxy(t, px.addr)
			if _, err := io.WriteString(c, raw); err != nil {
				t.Fatal(err)
			}
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, target, err)
			}
			c.Close()
			if !strings.HasPrefix(line, "HTTP/1.1 502") {
				t.Errorf("%s %s: %q, want 502", tt.method, target, line)
			}
			time.Sleep(20 * time.Millisecond) // the backend counts after its read
			mu.Lock()
			n := seen[tt.method+" "+target+" "+body]
			mu.Unlock()
			if n != tt.sends {
				t.Errorf("%s %s with body %q reached the backends with it %d times, want %d", tt.method, target, body, n, tt.sends)
			}
		}
	}
}

// TestStaleConnByMethod: a kept-alive upstream connection that
// the backend resets as the next request arrives (its first bytes read,
// no answer) gets the one more try on a new connection that README's
// "Idle upstream connections" gives idempotent requests, for each of
// them (HEAD, OPTIONS and TRACE too, beside TestStaleConnectionRetried's
// GET, PUT and DELETE), and not for PATCH, a WebDAV method or a
// lower-case "get": those get 502 and are sent once. (Coverage: behaves
// right.)
func TestStaleConnByMethod(t *testing.T) {
	for _, tt := range []struct {
		method string
		code   int
	}{
		{"HEAD", 200}, {"OPTIONS", 200}, {"TRACE", 200},
		{"PATCH", 502}, {"PROPFIND", 502}, {"get", 502},
	} {
		t.Run(tt.method, func(t *testing.T) {
			b := startStaleBackend(t, 0)
			px := startProxy(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\nretries: { attempts: 1 }\n", b.ln.Addr()))
			if code, _ := rawDo(t, px.addr, "GET", "/warm", ""); code != 200 {
				t.Fatalf("warm-up = %d, want 200", code)
			}
			if code, body := rawDo(t, px.addr, tt.method, "/x", ""); code != tt.code {
				t.Errorf("%s = %d %q, want %d", tt.method, code, body, tt.code)
			}
			wantAnswered := int64(1)
			if tt.code == 200 {
				wantAnswered = 2 // the warm-up, and the request on a new connection
			}
			if got, broken := b.answered.Load(), b.broken.Load(); got != wantAnswered || broken != 1 {
				t.Errorf("%s: backend answered %d and broke %d requests, want %d and 1", tt.method, got, broken, wantAnswered)
			}
		})
	}
}
