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

// staleBackend answers the first request on each connection and keeps the
// connection open, then breaks the next request on it as a backend whose
// keep-alive timeout runs out as that request arrives: it reads the
// request's first byte (so the request is in its kernel, acknowledged)
// and resets the connection. firstDelay holds each first answer back, so
// that concurrent requests open connections of their own.
type staleBackend struct {
	ln         net.Listener
	answered   atomic.Int64 // first requests answered
	broken     atomic.Int64 // later requests reset
	firstDelay time.Duration
	mu         sync.Mutex
	methods    []string // the method of each request broken
}

func startStaleBackend(t *testing.T, firstDelay time.Duration) *staleBackend {
	b := &staleBackend{firstDelay: firstDelay}
	b.ln = serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		time.Sleep(b.firstDelay)
		// Counted before the answer goes, so that the client, which has
		// it once the write is done, sees the count (found by review).
		b.answered.Add(1)
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		line, err := br.ReadString(' ')
		if err != nil {
			return
		}
		b.mu.Lock()
		b.methods = append(b.methods, strings.TrimSpace(line))
		b.mu.Unlock()
		b.broken.Add(1)
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	return b
}

// TestStaleConnectionRetried: a kept-alive connection that breaks as a
// request goes out, before any answer (the backend's keep-alive close
// racing the request, after the idle check looked), gets an idempotent
// request sent once more on another connection to the same backend, not
// counted as a retry (attempts is 1 here) nor as a reset. A POST is not
// sent again: its 502 stands. A second such break in the same exchange
// counts as a reset.
func TestStaleConnectionRetried(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		body       string // a long one breaks the request's write
		idleConns  int    // connections left idle before the request
		wantCode   int
		wantBroken int64
		wantIdle   float64 // sluice_upstream_errors_total{kind="idle"}
		wantReset  float64 // sluice_upstream_errors_total{kind="reset"}
	}{
		{"GET goes again", "GET", "", 1, 200, 1, 1, 0},
		{"DELETE goes again", "DELETE", "", 1, 200, 1, 1, 0},
		{"PUT whose write broke goes again", "PUT", strings.Repeat("x", 8<<20), 1, 200, 1, 1, 0},
		{"POST is not replayed", "POST", "", 1, 502, 1, 0, 1},
		{"POST whose write broke is not replayed", "POST", strings.Repeat("x", 8<<20), 1, 502, 1, 0, 1},
		{"a second break fails", "GET", "", 2, 502, 2, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startStaleBackend(t, 100*time.Millisecond)
			m := metrics.New("test")
			px := startProxyWith(t, fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\nretries: { attempts: 1 }\n", b.ln.Addr()), m)
			// Open tc.idleConns connections with concurrent requests, each
			// held by the backend long enough for the others to need
			// their own connection.
			var wg sync.WaitGroup
			codes := make([]int, tc.idleConns)
			for i := range tc.idleConns {
				wg.Go(func() { codes[i], _ = rawDo(t, px.addr, "GET", "/warm", "") })
			}
			wg.Wait()
			for i, c := range codes {
				if c != 200 {
					t.Fatalf("warm-up request %d = %d, want 200", i, c)
				}
			}
			if got := b.answered.Load(); got != int64(tc.idleConns) {
				t.Fatalf("backend answered %d warm-up requests on their own connections, want %d", got, tc.idleConns)
			}
			code, body := rawDo(t, px.addr, tc.method, "/x", tc.body)
			if code != tc.wantCode {
				t.Errorf("%s = %d %q, want %d", tc.method, code, body, tc.wantCode)
			}
			if got := b.broken.Load(); got != tc.wantBroken {
				t.Errorf("backend broke %d requests, want %d", got, tc.wantBroken)
			}
			b.mu.Lock()
			for _, m := range b.methods {
				if m != tc.method {
					t.Errorf("backend broke a %s request, want only %s", m, tc.method)
				}
			}
			b.mu.Unlock()
			idle, reset := idleAndResets(t, m)
			if idle != tc.wantIdle || reset != tc.wantReset {
				t.Errorf(`sluice_upstream_errors_total: idle %v, reset %v; want idle %v, reset %v`, idle, reset, tc.wantIdle, tc.wantReset)
			}
		})
	}
}

// idleAndResets sums sluice_upstream_errors_total of kinds idle and reset
// over every backend.
func idleAndResets(t *testing.T, m *metrics.Metrics) (idle, reset float64) {
	t.Helper()
	for k, v := range gatherCounts(t, m, "sluice_upstream_errors_total") {
		switch {
		case strings.Contains(k, `kind="idle"`):
			idle += v
		case strings.Contains(k, `kind="reset"`):
			reset += v
		}
	}
	return idle, reset
}
