package proxy

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"sluice/metrics"
)

// Found by review. What was wrong: a backend removed by a reload while a
// request ran on it past drain_timeout had its series deleted at the
// deadline (Controller.finishDrains: the drain moved to c.overdue, which
// leaving() did not look at), and the request, answered 200, was counted
// into the deleted series: lost from sluice_requests_total for good.
// README (Draining): a leaving backend's series are deleted once its last
// request is counted. Here the series must still be there once the drain
// is overdue, and the request must be counted: the backend is added back
// before the request ends, so that its rows stay to be read (in the old
// code they had been deleted and made anew, at 0, and the count went to
// the deleted ones).
func TestMetOverdueDrainCountsRequest(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "late\n")
	})
	t.Cleanup(free)
	other := startBackend(t, "other", nil)
	m := metrics.New("test")
	yml := func(bs ...*testBackend) string {
		return poolYAML("round_robin", bs, nil) + "drain_timeout: 200ms\ntimeouts: { response: 10s }\n"
	}
	px := startProxyWith(t, yml(slow), m)
	status := getStatus("http://" + px.addr + "/slow")
	waitFor(t, "the request on slow", 5*time.Second, func() bool { return slow.hits.Load() > 0 })
	apply(t, px, yml(other))
	overdue := func() bool {
		n := 0
		_ = px.ctrl.do(context.Background(), func() error { n = len(px.ctrl.overdue); return nil })
		return n == 1
	}
	waitFor(t, "the drain past its deadline, its request still running", 5*time.Second, overdue)
	row := `route="/",pool="p",backend="` + slow.addr() + `",code="2xx"`
	if _, ok := gatherCounts(t, m, "sluice_requests_total")[row]; !ok {
		t.Errorf("sluice_requests_total{%s} deleted at the drain deadline while its request still runs", row)
	}
	apply(t, px, yml(other, slow))
	free()
	if code := <-status; code != 200 {
		t.Fatalf("request past drain_timeout = %d, want 200", code)
	}
	waitFor(t, "the request counted", 5*time.Second, func() bool {
		return gatherCounts(t, m, "sluice_requests_total")[row] == 1
	})
}
