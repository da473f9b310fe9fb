package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestConnLimitKeepsOutlierStreak: a request refused for want
// of a free upstream connection (limits.max_conns_per_backend) between two
// timeouts of a hung backend.
//
// Before the fix (found by review): README.md:641-644 says "Failures that say nothing about the
// backend's health (a malformed exchange; sluice's own connection limit,
// `limits.max_conns_per_backend`, ...) do not count toward outlier
// detection", and README.md:934-936 "A black-hole backend (accepts
// connections, never answers) is ejected through its timeouts." In
// forward, such an attempt calls up.outlier.Record(false), which ends the
// backend's streak of failures as a success would. So timeout, conn-limit
// refusal, timeout leaves a streak of 1, not 2, and a hung backend under
// load, whose connections are all stuck and whose every other request
// meets the limit, is never ejected: the load that makes ejection matter
// keeps resetting the count. (A malformed exchange, answered 502, resets
// it the same way.) Envoy counts neither towards nor against
// consecutive failures for its own pool overflow; the code should skip
// Record for kindNoConn (and kindOther), not the README.
func TestConnLimitKeepsOutlierStreak(t *testing.T) {
	addr, _ := hungBackend(t)
	px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s }
    backends: [{ address: %s }]
timeouts: { response: 300ms }
limits: { max_conns_per_backend: 1 }
retries: { attempts: 1 }
`, addr))
	c := testClient(t)
	url := "http://" + px.addr + "/"

	// 1: a timeout, the first failure of the streak.
	if code, _, body := get(t, c, url, nil); code != http.StatusGatewayTimeout {
		t.Fatalf("first GET = %d %q, want 504", code, body)
	}
	// 2: a request takes the one connection and hangs ...
	held, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(held, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	// ... so this one finds none free: sluice's own limit, which says
	// nothing about the backend.
	if code, _, body := get(t, c, url, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("GET at the connection limit = %d %q, want 503", code, body)
	}
	// 3: the held request times out: the second failure in a row.
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("held GET = %d, want 504", resp.StatusCode)
	}
	if !waitEjected(t, px, addr) {
		t.Errorf("hung backend not ejected after 2 timeouts (consecutive_failures: 2): streak %d; the conn-limit 503 between them reset it",
			px.proxy.Current().pools["p"].targets[0].outlier.Streak())
	}
}
