package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/metrics"
	"sluice/netconn"
)

// slowHolds makes each accepted connection's HoldNextWrite (which
// Proxy.forward calls on an answer of 4 KiB or more, after the upstream
// exchange has ended and before Handle counts the request) take a while:
// it stands for the request goroutine being preempted there, which on a
// busy machine takes milliseconds.
type slowHolds struct{ net.Listener }

func (l slowHolds) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return slowHold{c.(*netconn.Conn)}, nil
}

type slowHold struct{ *netconn.Conn }

func (c slowHold) HoldNextWrite() {
	time.Sleep(400 * time.Millisecond)
	c.Conn.HoldNextWrite()
}

// TestMetricsDrainForgetsBeforeCount: a backend removed by a
// reload while a request runs on it; the request ends. README: its series
// are deleted "once the requests in flight on them have finished and been
// counted" (TestRemovedPoolDrainsVisibly: "the request is counted; then
// the backend's ... series go").
//
// Before the fix (found by review): the request's sluice_requests_total row never shows it: it reads 0
// until the backend's series are deleted, and the request is then counted
// into a deleted series, lost (likewise its upstream histogram sample, if
// the deletion comes first). Cause: a draining client is done once its
// in-flight count is 0 (Controller.finishDrains), and forward ends that
// count (up.client.end()) before it returns to Handle, which counts the
// request afterwards; a controller tick between the two calls
// Metrics.ForgetBackend, which deletes the backend's requests_total rows
// on every route whatever the route's own in-flight count says
// (forgetSeries waits for that count only for route and pool series). The
// window is a few microseconds of work, but any preemption there (GC, a
// loaded 2-core machine) loses the count; the test widens it with a slow
// HoldNextWrite. Fix: keep the backend's series until the requests that
// used it are counted: e.g. end the client's (or the backend's) in-flight
// bracket in Handle after the counters are incremented, or have
// finishDrains also wait for the in-flight count of the routes through
// the backend's pool.
func TestMetricsDrainForgetsBeforeCount(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, strings.Repeat("z", 8<<10)) // over ClientWriteBufferSize: held
	})
	t.Cleanup(free)
	other := startBackend(t, "other", nil)
	m := metrics.New("test")
	yml := func(bs ...*testBackend) string {
		return poolYAML("round_robin", bs, nil) + "drain_timeout: 30s\n"
	}
	px := startProxyOn(t, yml(slow), m, func(ln net.Listener) net.Listener { return slowHolds{ln} })
	status := getStatus("http://" + px.addr + "/")
	waitFor(t, "the request on slow", 5*time.Second, func() bool { return slow.hits.Load() > 0 })
	apply(t, px, yml(other))
	row := `route="/",pool="p",backend="` + slow.addr() + `",code="2xx"`
	free()
	// Watch the row until it goes: it must show the request at some point.
	seen := 0.0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		v, ok := gatherCounts(t, m, "sluice_requests_total")[row]
		if !ok {
			break
		}
		seen = max(seen, v)
		time.Sleep(2 * time.Millisecond)
	}
	if code := <-status; code != 200 {
		t.Fatalf("request across the reload = %d, want 200", code)
	}
	if seen != 1 {
		t.Errorf("sluice_requests_total{%s} never read 1 before the drained backend's series went (max %v): "+
			"the request was counted after its row was deleted", row, seen)
	}
}
