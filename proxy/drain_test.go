package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// apply parses yml and makes it the running config of px.
func apply(t *testing.T, px *testProxy, yml string) {
	t.Helper()
	if err := px.ctrl.Apply(context.Background(), mustParse(t, yml)); err != nil {
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
	// Two requests run on slow, each ending when it takes a token: the
	// first ends while the second holds the drain open, so its count is
	// read before the drain can end. (The drain ends, and the series go,
	// at the controller's first tick after the last request leaves; read
	// after the only request's answer, the count raced that tick.)
	next, done := make(chan struct{}), make(chan struct{})
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-next:
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) }) // before the backend's Close, which waits for it
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

	first, second := getStatus("http://"+px.addr+"/q/x"), getStatus("http://"+px.addr+"/q/y")
	waitFor(t, "two requests running on slow", 5*time.Second, func() bool { return slow.hits.Load() == 2 })
	apply(t, px, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\ndrain_timeout: 30s\n", other.addr()))

	if got := leavingOf(t, px, slow.addr()); len(got) != 1 || got[0].InFlight != 2 || got[0].State != StateDraining {
		t.Errorf("Status() entries of the leaving backend = %+v, want one draining, in flight 2", got)
	}
	if v := backendGauge(t, m, "sluice_backend_state", slow.addr(), "draining"); v != 1 {
		t.Errorf("state draining = %v, want 1", v)
	}
	if up := backendGauge(t, m, "sluice_backend_up", slow.addr(), ""); up != 0 {
		t.Errorf("up = %v, want 0", up)
	}

	answer := func() int {
		select {
		case code := <-first:
			return code
		case code := <-second:
			return code
		}
	}
	next <- struct{}{}
	if code := answer(); code != 200 {
		t.Fatalf("request in flight across the reload = %d, want 200", code)
	}
	row := `route="/q/",pool="q",backend="` + slow.addr() + `",code="2xx"`
	if got := gatherCounts(t, m, "sluice_requests_total")[row]; got != 1 {
		t.Errorf("sluice_requests_total{%s} = %v, want 1 before the drain ends", row, got)
	}
	next <- struct{}{}
	if code := answer(); code != 200 {
		t.Fatalf("second request in flight across the reload = %d, want 200", code)
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
		status := getStatus("http://" + px.addr + path)
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

// TestStickySessionsOnHeldBackend: a healthy backend with weight 0 (set
// in the file or through the admin API) or drained through the admin API
// keeps the sticky sessions it has, as in HAProxy, and gets no new ones;
// one removed from the pool does not keep them (found by a probe: the
// sessions of a backend set to weight 0 were spread at once).
func TestStickySessionsOnHeldBackend(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	c := bs[2]
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		give func(px *testProxy) error
		keep bool // c keeps its sessions
	}{
		{"admin weight 0", func(px *testProxy) error { return px.ctrl.SetWeight(ctx, "p", c.addr(), 0) }, true},
		{"admin drain", func(px *testProxy) error { return px.ctrl.SetDrain(ctx, "p", c.addr(), true) }, true},
		{"file weight 0", func(px *testProxy) error {
			apply(t, px, poolYAML("sticky", bs, []int{1, 1, 0}))
			return nil
		}, true},
		{"removed", func(px *testProxy) error {
			apply(t, px, poolYAML("sticky", bs[:2], nil))
			return nil
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			px := startProxy(t, poolYAML("sticky", bs, nil))
			hc := testClient(t)
			do := func(cookie *http.Cookie) (string, *http.Cookie) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, "http://"+px.addr+"/", nil)
				if cookie != nil {
					req.AddCookie(cookie)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status = %d, want 200", resp.StatusCode)
				}
				var set *http.Cookie
				for _, ck := range resp.Cookies() {
					if ck.Name == "sluice_affinity" {
						set = ck
					}
				}
				return resp.Header.Get("X-Backend"), set
			}
			var session *http.Cookie
			for range 200 {
				if got, set := do(nil); got == "c" {
					session = set
					break
				}
			}
			if session == nil {
				t.Fatal("no session on c in 200 requests")
			}
			if err := tt.give(px); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				got, set := do(session)
				switch {
				case tt.keep && (got != "c" || set != nil):
					t.Fatalf("request of c's session went to %s with cookie %v, want c and no new cookie", got, set)
				case !tt.keep && (got == "c" || set == nil):
					t.Fatalf("request of c's session went to %s with cookie %v, want another backend and a new cookie", got, set)
				}
			}
			for range 60 {
				if got, _ := do(nil); got == "c" {
					t.Fatal("a new session went to c")
				}
			}
		})
	}
}

// TestStickySessionsLeaveEjectedHeldBackend: a backend of weight 0 that
// keeps its sessions loses them once ejected; and while no other backend
// takes new requests, its sessions' requests still reach it.
func TestStickySessionsLeaveEjectedHeldBackend(t *testing.T) {
	var failing atomic.Bool
	c := startBackend(t, "c", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	a := startBackend(t, "a", nil)
	yml := strings.Replace(poolYAML("sticky", []*testBackend{c, a}, []int{1, 0}), "    backends:",
		"    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 100 }\n    backends:", 1)
	px := startProxy(t, yml)
	ctx := context.Background()
	hc := testClient(t)
	do := func(cookie *http.Cookie) (int, string, *http.Cookie) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+px.addr+"/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var set *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "sluice_affinity" {
				set = ck
			}
		}
		return resp.StatusCode, resp.Header.Get("X-Backend"), set
	}
	_, got, session := do(nil)
	if got != "c" || session == nil {
		t.Fatalf("first request went to %q with cookie %v, want c and a cookie", got, session)
	}
	if err := px.ctrl.SetWeight(ctx, "p", c.addr(), 0); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(nil); code != http.StatusServiceUnavailable {
		t.Errorf("new session with every weight 0 = %d, want 503", code)
	}
	if code, got, _ := do(session); code != 200 || got != "c" {
		t.Errorf("session request with every weight 0 = %d from %q, want 200 from c", code, got)
	}
	if err := px.ctrl.SetWeight(ctx, "p", a.addr(), 1); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	for range 2 {
		if code, got, _ := do(session); code != http.StatusInternalServerError || got != "c" {
			t.Fatalf("session request to failing c = %d from %q, want c's 500", code, got)
		}
	}
	waitFor(t, "c ejected", 2*time.Second, func() bool { return stateOf(t, px, c.addr()).Ejected })
	if code, got, set := do(session); code != 200 || got != "a" || set == nil {
		t.Errorf("session request after c's ejection = %d from %q with cookie %v, want 200 from a with a new cookie", code, got, set)
	}
}

// TestStickyHeldBackendFailureStands: a failed request of a session on a
// backend that takes no new sessions, with no other backend to retry on,
// answers with that failure (502), not as if the pool had no backend.
func TestStickyHeldBackendFailureStands(t *testing.T) {
	c := startBackend(t, "c", nil)
	px := startProxy(t, poolYAML("sticky", []*testBackend{c}, nil))
	resp, err := testClient(t).Get("http://" + px.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 1 {
		t.Fatalf("cookies = %v, want one", resp.Cookies())
	}
	if err := px.ctrl.SetDrain(context.Background(), "p", c.addr(), true); err != nil {
		t.Fatal(err)
	}
	c.srv.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+px.addr+"/", nil)
	req.AddCookie(resp.Cookies()[0])
	resp, err = testClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("session request to the refusing drained backend = %d, want 502", resp.StatusCode)
	}
}
