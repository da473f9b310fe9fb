package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestAccessLogUpstreamFailure: each access log line says how many
// upstream exchanges the request took (attempts) and why the last one
// failed (upstream_error, empty when the backend's answer went to the
// client), so that a 502 or 504 can be traced to its cause from the log
// alone, as nginx's error log or HAProxy's termination state allow.
func TestAccessLogUpstreamFailure(t *testing.T) {
	dead := freeAddr(t)
	live := startBackend(t, "live", nil)
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "late")
	})
	badStatus := startRawBackend(t, "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n")
	resetting := serveRaw(t, func(c net.Conn) {
		var req fasthttp.Request
		_ = req.Read(bufio.NewReader(c))
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	y := fmt.Sprintf(`timeouts: { response: 200ms }
retries: { attempts: 2 }
routes:
  - { match: { host: x, path_prefix: /ok/ }, pool: ok }
  - { match: { host: x, path_prefix: /retry/ }, pool: retry }
  - { match: { host: x, path_prefix: /slow/ }, pool: slow }
  - { match: { host: x, path_prefix: /bad/ }, pool: bad }
  - { match: { host: x, path_prefix: /reset/ }, pool: reset }
  - { match: { host: x, path_prefix: /empty/ }, pool: empty }
pools:
  ok: { backends: [{ address: %s }] }
  retry: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
  slow: { backends: [{ address: %s }] }
  bad: { backends: [{ address: %s }] }
  reset: { backends: [{ address: %s }] }
  empty: { backends: [{ address: %s, weight: 0 }] }
`, live.addr(), dead, live.addr(), slow.addr(), badStatus.ln.Addr(), resetting.Addr(), live.addr())
	type want struct {
		status   int
		attempts int
		failure  string
	}
	cases := []struct {
		name, method, path string
		want               want
	}{
		{"answered", "GET", "/ok/", want{200, 1, ""}},
		{"timed out", "GET", "/slow/", want{504, 1, "timeout"}},
		{"status 000", "GET", "/bad/", want{502, 1, "bad_response"}},
		{"reset, POST not retried", "POST", "/reset/", want{502, 1, "reset"}},
		{"no backend", "GET", "/empty/", want{503, 0, ""}},
		{"no route", "GET", "/nowhere", want{404, 0, ""}},
		// Round robin sends one of these two to the refusing backend
		// first: one line says 2 attempts, the other 1 (checked below).
		{"retry 1", "GET", "/retry/1", want{200, -1, ""}},
		{"retry 2", "GET", "/retry/2", want{200, -1, ""}},
	}
	lines := review14Logged(t, y, func(addr string) {
		for _, c := range cases {
			if code := rawStatus(t, addr, c.method+" "+c.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"); code != c.want.status {
				t.Errorf("%s: status %d, want %d", c.name, code, c.want.status)
			}
		}
	})
	if len(lines) != len(cases) {
		t.Fatalf("%d lines logged, want %d: %v", len(lines), len(cases), lines)
	}
	retried := map[int]int{}
	for i, c := range cases {
		l := lines[i]
		attempts, ok := l["attempts"].(float64)
		failure, ok2 := l["upstream_error"].(string)
		if !ok || !ok2 {
			t.Fatalf("%s: line %v lacks attempts or upstream_error", c.name, l)
		}
		if c.want.attempts < 0 {
			retried[int(attempts)]++
		} else if int(attempts) != c.want.attempts {
			t.Errorf("%s: attempts %v, want %d", c.name, attempts, c.want.attempts)
		}
		if failure != c.want.failure {
			t.Errorf("%s: upstream_error %q, want %q", c.name, failure, c.want.failure)
		}
	}
	if retried[1] != 1 || retried[2] != 1 {
		t.Errorf("attempts of the two requests to the pool with a refusing backend: %v, want one each of 1 and 2", retried)
	}
	// Every name the log can write is one the README lists.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for k := kindOther; k < numErrKinds; k++ {
		if name := k.String(); name == "" || !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("errKind %d has the log name %q, which README.md does not list", k, name)
		}
	}
}
