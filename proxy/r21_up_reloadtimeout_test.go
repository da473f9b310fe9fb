package proxy

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Found by review. What was wrong: README, Retries: "After a reload that came while the request was
// in flight, a retry goes by the new config: through the backend's new
// client (new timeouts or limits)". The new client brings the new
// timeouts.connect, upstream_idle and limits, but not the new
// timeouts.response: forward (handler.go, the up.client.do call) passes
// s.responseTimeout, the timeout of the snapshot the request began under,
// to every attempt. Here a GET is held at a (response timeout 5s), a
// reload sets timeouts.response to 300ms, a then breaks the connection,
// and the retry goes to b through b's new client; b takes 1.5s to
// answer. Expected: 504 after about 300ms (the retry goes by the new
// config). Actual: b's 200 after 3s, under the old 5s timeout (the
// whole request can take the old timeout on every retry after an
// operator lowered it to shed a slow backend).
func TestUpRetryAfterReloadTakesNewResponseTimeout(t *testing.T) {
	hold, free := releaser()
	t.Cleanup(free)
	a := startBackend(t, "a", holdThenBreak(hold))
	var slow atomic.Bool
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(3 * time.Second)
		}
	})
	yml := func(response string) string {
		return poolYAML("round_robin", []*testBackend{a, b}, nil) +
			"drain_timeout: 30s\nretries: { attempts: 2 }\ntimeouts: { response: " + response + " }\n"
	}
	px := startProxy(t, yml("5s"))
	status := sendUntil(px, a)
	waitFor(t, "a GET held by a", 5*time.Second, func() bool { return a.hits.Load() == 1 })
	apply(t, px, yml("300ms"))
	waitFor(t, "b's old client drained", 5*time.Second, func() bool { return len(leavingOf(t, px, b.addr())) == 0 })
	slow.Store(true)
	bBefore := b.hits.Load()
	start := time.Now()
	free()
	got := awaitStatus(t, status)
	took := time.Since(start)
	if b.hits.Load() == bBefore {
		t.Fatalf("the retry did not reach b (status %d); the test needs it there", got)
	}
	if got != http.StatusGatewayTimeout {
		t.Errorf("retry after a reload to timeouts.response 300ms, to a backend taking 3s: %d after %v; want 504 (the new config's timeout; the old one, 5s, lets b answer)",
			got, took.Round(10*time.Millisecond))
	}
}
