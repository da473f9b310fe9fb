package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/accesslog"
	"sluice/config"
)

// review14Logged runs send against a proxy serving yamlText with the
// access log on, and returns the lines logged.
func review14Logged(t *testing.T, yamlText string, send func(addr string)) []map[string]any {
	t.Helper()
	px := startProxy(t, yamlText)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	send(px.addr)
	px.proxy.SetAccessLog(nil)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	return accessLogLines(t, path)
}

// TestAdminReviewAccessLogOutcomes: the access log's status, bytes_out,
// upstream and durations for a request retried past a refused backend, a
// 502 after every attempt failed, a 504, a 404 with no route, a 400 the
// proxy refuses from its head, a 503 with no backend and a 103-hinted
// answer. Only 200s were checked before (TestAccessLogLines).
func TestAdminReviewAccessLogOutcomes(t *testing.T) {
	dead := freeAddr(t)
	live := startBackend(t, "live", nil)
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "late")
	})
	hints := hintsBackend(t, 10)
	y := fmt.Sprintf(`timeouts: { response: 200ms }
retries: { attempts: 2 }
routes:
  - { match: { host: x, path_prefix: /retry/ }, pool: retry }
  - { match: { host: x, path_prefix: /dead/ }, pool: dead }
  - { match: { host: x, path_prefix: /slow/ }, pool: slow }
  - { match: { host: x, path_prefix: /empty/ }, pool: empty }
  - { match: { host: x, path_prefix: /hint }, pool: hints }
pools:
  retry: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
  dead: { algorithm: round_robin, backends: [{ address: %s }] }
  slow: { algorithm: round_robin, backends: [{ address: %s }] }
  empty: { algorithm: round_robin, backends: [{ address: %s, weight: 0 }] }
  hints: { algorithm: round_robin, backends: [{ address: %s }] }
`, dead, live.addr(), dead, slow.addr(), live.addr(), hints.Addr())
	type want struct {
		status          int
		upstream, route string
		bytesOut        int
		minUp, minDur   float64
	}
	cases := []struct {
		name, raw string
		want      want
	}{
		{"retried", "GET /retry/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{200, live.addr(), "x/retry/", len("hello from live\n"), 0, 0}},
		{"retried again", "GET /retry/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{200, live.addr(), "x/retry/", len("hello from live\n"), 0, 0}},
		{"502", "GET /dead/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{502, dead, "x/dead/", -1, 0, 0}},
		{"504", "GET /slow/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{504, slow.addr(), "x/slow/", -1, 0.15, 0.15}},
		{"404", "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{404, "", "", -1, 0, 0}},
		{"400", "GET /retry/#f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{400, "", "", -1, 0, 0}},
		{"503", "GET /empty/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{503, "", "x/empty/", -1, 0, 0}},
		{"103", "GET /hint HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want{200, hints.Addr().String(), "x/hint", 2, 0, 0}},
	}
	bodies := make([]int, len(cases))
	lines := review14Logged(t, y, func(addr string) {
		for i, c := range cases {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, c.raw)
			b, _ := io.ReadAll(conn)
			conn.Close()
			s := string(b)
			// The last answer's body (after 103s).
			k := strings.LastIndex(s, "HTTP/1.1 ")
			if k < 0 {
				t.Fatalf("%s: no answer: %q", c.name, s)
			}
			s = s[k:]
			code := 0
			fmt.Sscanf(s, "HTTP/1.1 %d", &code)
			if code != c.want.status {
				t.Errorf("%s: status %d, want %d: %q", c.name, code, c.want.status, s)
			}
			if j := strings.Index(s, "\r\n\r\n"); j >= 0 {
				bodies[i] = len(s) - j - 4
			}
		}
	})
	if len(lines) != len(cases) {
		t.Fatalf("%d lines logged, want %d: %v", len(lines), len(cases), lines)
	}
	for i, c := range cases {
		l := lines[i]
		num := func(k string) float64 { f, _ := l[k].(float64); return f }
		w := c.want
		wantOut := w.bytesOut
		if wantOut < 0 {
			wantOut = bodies[i]
		}
		if int(num("status")) != w.status || l["upstream_addr"] != w.upstream || l["route"] != w.route ||
			int(num("bytes_out")) != wantOut {
			t.Errorf("%s: logged %v; want status %d, upstream_addr %q, route %q, bytes_out %d", c.name, l, w.status, w.upstream, w.route, wantOut)
		}
		if l["host"] != "x" {
			t.Errorf("%s: host %v, want x", c.name, l["host"])
		}
		up, dur := num("upstream_duration"), num("duration")
		if up < w.minUp || dur < w.minDur || up > dur+0.000002 || up < 0 || dur < 0 || dur > 3 {
			t.Errorf("%s: upstream_duration %v, duration %v; want %v <= upstream_duration <= duration, duration >= %v", c.name, up, dur, w.minUp, w.minDur)
		}
		if w.upstream == "" && up != 0 {
			t.Errorf("%s: upstream_duration %v with no backend tried, want 0", c.name, up)
		}
	}
}

// TestAdminReviewAccessLogHeadBytes: bytes_out is the body bytes sent
// to the client (README, Access log). A HEAD request gets no body, so its
// line says 0 whoever answered it. (Found by review: for an answer sluice
// made itself, 404 no route, 503 no backend, 502, the log counted the
// error text fasthttp never sends for HEAD.)
func TestAdminReviewAccessLogHeadBytes(t *testing.T) {
	live := startBackend(t, "live", nil)
	dead := freeAddr(t)
	y := fmt.Sprintf(`routes:
  - { match: { host: x, path_prefix: /ok/ }, pool: ok }
  - { match: { host: x, path_prefix: /dead/ }, pool: dead }
  - { match: { host: x, path_prefix: /empty/ }, pool: empty }
pools:
  ok: { algorithm: round_robin, backends: [{ address: %s }] }
  dead: { algorithm: round_robin, backends: [{ address: %s }] }
  empty: { algorithm: round_robin, backends: [{ address: %s, weight: 0 }] }
`, live.addr(), dead, live.addr())
	paths := []string{"/ok/", "/nowhere", "/empty/", "/dead/"}
	wantCodes := []int{200, 404, 503, 502}
	lines := review14Logged(t, y, func(addr string) {
		for i, p := range paths {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "HEAD "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			b, _ := io.ReadAll(conn)
			conn.Close()
			s := string(b)
			code := 0
			fmt.Sscanf(s, "HTTP/1.1 %d", &code)
			j := strings.Index(s, "\r\n\r\n")
			if code != wantCodes[i] || j < 0 || len(s) != j+4 {
				t.Errorf("HEAD %s: answer %q, want %d with no body", p, s, wantCodes[i])
			}
		}
	})
	if len(lines) != len(paths) {
		t.Fatalf("%d lines, want %d", len(lines), len(paths))
	}
	for i, l := range lines {
		if l["bytes_out"] != float64(0) || l["status"] != float64(wantCodes[i]) {
			t.Errorf("HEAD %s logged status %v bytes_out %v; want %d and 0 (no body bytes were sent)", paths[i], l["status"], l["bytes_out"], wantCodes[i])
		}
	}
}
