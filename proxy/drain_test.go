package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"sluice/config"
	"sluice/metrics"
)

// apply parses yml and makes it the running config of px.
func apply(t *testing.T, px *testProxy, yml string) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config.Parse() error: %v", err)
	}
	if err := px.ctrl.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
}

// leavingOf returns the entries of addr in /admin/pools's data.
func leavingOf(t *testing.T, px *testProxy, addr string) []BackendStatus {
	t.Helper()
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []BackendStatus
	for _, p := range st {
		for _, b := range p.Backends {
			if b.Address == addr && b.Source == "leaving" {
				out = append(out, b)
			}
		}
	}
	return out
}

// exported reports whether any series of m has label name=value.
func exported(t *testing.T, m *metrics.Metrics, name, value string) bool {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// TestRemovedPoolDrainsVisibly: a reload that removes a route and its
// pool while a request runs on the pool's backend leaves that backend
// listed as leaving and its series saying draining, up 0, until it has
// drained; the request is counted; then the backend's, the pool's and the
// route's series go (found by a probe: they went at once, and the
// backend was nowhere while its request ran).
func TestRemovedPoolDrainsVisibly(t *testing.T) {
	release := make(chan struct{})
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { <-release })
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the backend's Close, which waits for it
	other := startBackend(t, "other", nil)
	m := metrics.New("test")
	both := fmt.Sprintf(`routes:
  - { match: { path_prefix: /q/ }, pool: q }
  - pool: p
pools:
  p: { backends: [{ address: %s }] }
  q: { backends: [{ address: %s }] }
drain_timeout: 30s
`, other.addr(), slow.addr())
	px := startProxyWith(t, both, m)

	status := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + px.addr + "/q/x")
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	waitFor(t, "a request running on slow", 5*time.Second, func() bool { return slow.hits.Load() > 0 })
	apply(t, px, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\ndrain_timeout: 30s\n", other.addr()))

	if got := leavingOf(t, px, slow.addr()); len(got) != 1 || got[0].InFlight != 1 || got[0].State != StateDraining {
		t.Errorf("Status() entries of the leaving backend = %+v, want one draining, in flight 1", got)
	}
	if v := backendGauge(t, m, "sluice_backend_state", slow.addr(), "draining"); v != 1 {
		t.Errorf("state draining = %v, want 1", v)
	}
	if up := backendGauge(t, m, "sluice_backend_up", slow.addr(), ""); up != 0 {
		t.Errorf("up = %v, want 0", up)
	}

	free()
	if code := <-status; code != 200 {
		t.Fatalf("request in flight across the reload = %d, want 200", code)
	}
	row := `route="/q/",pool="q",backend="` + slow.addr() + `",code="2xx"`
	if got := gatherCounts(t, m, "sluice_requests_total")[row]; got != 1 {
		t.Errorf("sluice_requests_total{%s} = %v, want 1 before the drain ends", row, got)
	}
	waitFor(t, "the leaving backend drained", 5*time.Second, func() bool { return len(leavingOf(t, px, slow.addr())) == 0 })
	for _, l := range [][2]string{{"backend", slow.addr()}, {"pool", "q"}, {"route", "/q/"}} {
		if exported(t, m, l[0], l[1]) {
			t.Errorf("after the drain a series with %s=%q is still exported", l[0], l[1])
		}
	}
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "p" {
		t.Errorf("Status() after the drain = %+v, want pool p only", st)
	}
}

// TestReplacedClientDrainsOnItsOwn: a reload that changes only upstream
// settings gives the backend a new client; the old one is listed as
// leaving with its own requests in flight, not the new client's, and
// drains once they have finished, while the backend's counters carry
// over (found by a probe: it showed the new client's traffic for the
// whole drain_timeout, then "drained" with 32 in flight).
func TestReplacedClientDrainsOnItsOwn(t *testing.T) {
	first, second := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	free1 := func() { once1.Do(func() { close(first) }) }
	free2 := func() { once2.Do(func() { close(second) }) }
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			<-first
		} else {
			<-second
		}
	})
	t.Cleanup(free1)
	t.Cleanup(free2)
	yml := func(response string) string {
		return poolYAML("round_robin", []*testBackend{b}, nil) +
			"drain_timeout: 30s\ntimeouts: { response: " + response + " }\n"
	}
	px := startProxy(t, yml("5s"))
	send := func(path string) chan int {
		status := make(chan int, 1)
		go func() {
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + px.addr + path)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
		return status
	}

	done1 := send("/first")
	waitFor(t, "the first request at the backend", 5*time.Second, func() bool { return b.hits.Load() == 1 })
	apply(t, px, yml("6s"))
	done2 := send("/second")
	waitFor(t, "the second request at the backend", 5*time.Second, func() bool { return b.hits.Load() == 2 })

	if got := leavingOf(t, px, b.addr()); len(got) != 1 || got[0].InFlight != 1 {
		t.Errorf("Status() of the old client = %+v, want one entry with its 1 request in flight", got)
	}
	if got := stateOf(t, px, b.addr()); got.Source == "leaving" || got.InFlight != 2 {
		t.Errorf("Status() of the backend = %+v, want the member with both requests in flight (counters carry over)", got)
	}
	free1()
	if code := <-done1; code != 200 {
		t.Fatalf("request on the old client = %d, want 200", code)
	}
	waitFor(t, "the old client drained", 2*time.Second, func() bool { return len(leavingOf(t, px, b.addr())) == 0 })
	free2()
	if code := <-done2; code != 200 {
		t.Fatalf("request on the new client = %d, want 200", code)
	}
}
