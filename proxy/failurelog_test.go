package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// logLines is a zerolog output that tests can read while the proxy writes.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// with returns the lines whose message is msg, decoded.
func (l *logLines) with(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestFailureLogLimit: at most failuresPerSecond failures are logged in
// one second; the next line logged says how many were left out.
func TestFailureLogLimit(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name        string
		at          []time.Duration // failure times after t0
		wantLogged  int
		wantSkipped int64 // reported by the last line logged
	}{
		{"under the limit", []time.Duration{0, 1, 2}, 3, 0},
		{"over it in one second", repeat(0, failuresPerSecond+5), failuresPerSecond, 0},
		{"the next second reports the rest", append(repeat(0, failuresPerSecond+5), time.Second), failuresPerSecond + 1, 5},
		{"each second its own", append(repeat(0, failuresPerSecond), repeat(time.Second, failuresPerSecond)...), 2 * failuresPerSecond, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailureLog(zerolog.Nop())
			logged, lastSkipped := 0, int64(0)
			for _, d := range tc.at {
				if ok, skipped := f.allow(t0.Add(d)); ok {
					logged++
					lastSkipped = skipped
				}
			}
			if logged != tc.wantLogged || lastSkipped != tc.wantSkipped {
				t.Errorf("logged %d, last line reports %d left out; want %d and %d", logged, lastSkipped, tc.wantLogged, tc.wantSkipped)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestFailureLogLines: a failed upstream attempt, a refused response and
// a request with no healthy backend each write a warning to the process
// log naming pool, backend and cause, as nginx writes its error log; a
// storm of failures writes at most failuresPerSecond lines a second, and
// no failure goes uncounted.
func TestFailureLogLines(t *testing.T) {
	dead := freeAddr(t)
	bad := startRawBackend(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
	live := startBackend(t, "live", nil)
	var out logLines
	y := fmt.Sprintf(`retries: { attempts: 1 }
routes:
  - { match: { path_prefix: /dead/ }, pool: dead }
  - { match: { path_prefix: /bad/ }, pool: bad }
  - { match: { path_prefix: /empty/ }, pool: empty }
pools:
  dead: { backends: [{ address: %s }] }
  bad: { backends: [{ address: %s }] }
  empty: { backends: [{ address: %s, weight: 0 }] }
`, dead, bad.ln.Addr(), live.addr())
	px := startProxyLogged(t, y, nil, nil, zerolog.New(&out))
	status := func(path string) int {
		return rawStatus(t, px.addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	}

	// One second's worth, so that the storm below starts a second of its own.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	if code := status("/dead/"); code != 502 {
		t.Fatalf("GET /dead/ = %d, want 502", code)
	}
	if code := status("/bad/"); code != 502 {
		t.Fatalf("GET /bad/ = %d, want 502", code)
	}
	if code := status("/empty/"); code != 503 {
		t.Fatalf("GET /empty/ = %d, want 503", code)
	}
	failed := out.with(t, "upstream attempt failed")
	if len(failed) != 2 {
		t.Fatalf("%d upstream failure lines, want 2: %v", len(failed), failed)
	}
	for i, want := range []struct{ pool, backend, kind string }{
		{"dead", dead, "connect"},
		{"bad", bad.ln.Addr().String(), "bad_response"},
	} {
		l := failed[i]
		if l["level"] != "warn" || l["pool"] != want.pool || l["backend"] != want.backend || l["kind"] != want.kind ||
			l["attempt"] != 1.0 || l["retried"] != false || l["error"] == "" || !strings.HasPrefix(fmt.Sprint(l["client"]), "127.0.0.1:") {
			t.Errorf("line %d = %v; want a warning for pool %s, backend %s, kind %s, attempt 1, not retried, with error and client",
				i, l, want.pool, want.backend, want.kind)
		}
	}
	if nb := out.with(t, "no usable backend"); len(nb) != 1 || nb[0]["pool"] != "empty" {
		t.Errorf("no-backend lines %v, want one for pool empty", nb)
	}

	// A storm: more failures than a second's lines, then one more in the
	// next second, whose line counts those left out.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	const storm = 3 * failuresPerSecond
	for range storm {
		status("/dead/")
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	status("/dead/")
	lines := out.with(t, "upstream attempt failed")[2:]
	var counted int64
	for _, l := range lines {
		if n, ok := l["not_logged"].(float64); ok {
			counted += int64(n)
		}
	}
	if len(lines) >= storm || int64(len(lines))+counted != storm+1 {
		t.Errorf("%d failures: %d lines, %d reported left out; want fewer lines than failures, and every failure logged or counted",
			storm+1, len(lines), counted)
	}
}
