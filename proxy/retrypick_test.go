package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"sluice/metrics"
)

// How retries choose backends (retryTarget in handler.go). A review
// found each case below wrong in the retry loop as it was (it remembered
// only the last target tried and stepped to the next index after a pick
// of it); each comment describes that behaviour and why it mattered. The
// tests hold the fixed behaviour: no target twice, the picker's weights,
// load and slow start kept, replaced clients followed to the current
// snapshot.

// retryYAML is a pool of algorithm over addrs with the given weights
// (nil: 1 each) and extra top-level settings.
func retryYAML(algorithm string, addrs []string, weights []int, extra string) string {
	y := "routes:\n  - pool: p\npools:\n  p:\n    algorithm: " + algorithm + "\n"
	if algorithm == "ring_hash" || algorithm == "maglev" {
		y += "    hash_key: path\n"
	}
	y += "    backends:\n"
	for i, a := range addrs {
		w := 1
		if weights != nil {
			w = weights[i]
		}
		y += fmt.Sprintf("      - { address: %s, weight: %d }\n", a, w)
	}
	return y + extra
}

// TestRetryThirdAttemptReturnsToFirstFailure: a pool of three, two
// of which refuse connections, with retries.attempts: 3. Three tries are
// enough to reach the working backend every time if no backend is tried
// twice (nginx's proxy_next_upstream never retries a peer within one
// request; HAProxy's redispatch likewise moves on). forward remembers only
// the *last* failed backend (`last`), so the third attempt can go back to
// the one the first attempt failed on: D1, D2, D1. With equal weights
// that fails 4/27 ≈ 15% of requests with 502 although a healthy backend
// was never tried. The connect refusals are certain (no work done), so
// these requests were all safe to deliver.
func TestRetryThirdAttemptReturnsToFirstFailure(t *testing.T) {
	for _, alg := range []string{"random", "round_robin", "p2c", "least_conn", "ring_hash", "maglev"} {
		t.Run(alg, func(t *testing.T) {
			good := startBackend(t, "good", nil)
			addrs := []string{freeAddr(t), freeAddr(t), good.addr()}
			px := startProxy(t, retryYAML(alg, addrs, nil, "retries: { attempts: 3 }\n"))
			c := testClient(t)
			const n = 150
			failed := 0
			for i := range n {
				// Distinct paths: with hash_key: path each keys a backend.
				if code, _, _ := get(t, c, fmt.Sprintf("http://%s/k%d", px.addr, i), nil); code != 200 {
					failed++
				}
			}
			if failed != 0 {
				t.Errorf("%d of %d requests failed with 3 attempts over 2 refusing backends and 1 working one; want 0 (a retry went back to a backend this request had already failed on)", failed, n)
			}
		})
	}
}

// TestRetrySkewFollowsListOrder: the `idx == last → idx+1` step in
// forward hands every retry that re-picked the failed backend to the
// backend listed after it, whatever the weights. Pool [D weight 98
// (refusing), B weight 1, C weight 1]: B and C have equal weight, so the
// retries away from D should split evenly between them; instead the retry
// pick lands on D 98% of the time and moves to B, so B takes ~99% of the
// retried traffic and C ~1%. In general the backend after a failing one
// gets the failing one's whole retry share on top of its own (with equal
// weights over three: 2/3 of the retries instead of 1/2).
func TestRetrySkewFollowsListOrder(t *testing.T) {
	b := startBackend(t, "b", nil)
	cb := startBackend(t, "c", nil)
	px := startProxy(t, retryYAML("random", []string{freeAddr(t), b.addr(), cb.addr()}, []int{98, 1, 1}, "retries: { attempts: 2 }\n"))
	c := testClient(t)
	const n = 200
	for i := range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("request %d = %d, want 200", i, code)
		}
	}
	hb, hc := b.hits.Load(), cb.hits.Load()
	if hc*3 < hb {
		t.Errorf("equal-weight backends after a failing one: b took %d, c took %d requests; want about equal shares (the retry's pick of the failed backend is moved to the next one listed)", hb, hc)
	}
}

// TestRetryOverridesSlowStart: the same step gives a backend that is
// slow-starting (effective weight 1/16 of its weight just after it joins)
// the whole retry share of the failing backend listed before it. Pool
// [D refusing, S joining with slow_start: 1h, C], random: S should take
// about 1/17 of the requests that succeed (~18 of 300); it takes ~84,
// defeating the ramp that protects a cold backend.
func TestRetryOverridesSlowStart(t *testing.T) {
	s := startBackend(t, "s", nil)
	cb := startBackend(t, "c", nil)
	dead := freeAddr(t)
	yml := func(addrs ...string) string {
		y := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: random\n    slow_start: 1h\n    backends:\n"
		for _, a := range addrs {
			y += fmt.Sprintf("      - {address: %s, weight: 1}\n", a)
		}
		return y + "retries: { attempts: 2 }\n"
	}
	px := startProxy(t, yml(dead, cb.addr()))
	apply(t, px, yml(dead, s.addr(), cb.addr()))
	if st := stateOf(t, px, s.addr()); st.EffectiveWeight >= 0.5 {
		t.Fatalf("joining backend's effective weight = %v, want it ramping from 1/16", st.EffectiveWeight)
	}
	c := testClient(t)
	const n = 300
	for i := range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("request %d = %d, want 200", i, code)
		}
	}
	if got := s.hits.Load(); got > 45 {
		t.Errorf("slow-starting backend (effective weight 1/16 against 1) took %d of %d requests; want about %d (1/17 of them): retries of the failing backend listed before it all went to it", got, n, n/17)
	}
}

// TestRetryIgnoresLoad: least_conn and p2c pick for a retry by load,
// but a backend that fails fast (refused) is always the least loaded, so
// the retry pick keeps landing on it, and the `idx+1` step then sends the
// retry to the next backend listed, however busy. Pool [A refusing, B
// with 4 requests in flight, C idle]: every retry should go to C (idle);
// about half go to B. A load-aware algorithm's retry ends up ignoring
// load exactly when a backend is failing.
func TestRetryIgnoresLoad(t *testing.T) {
	for _, alg := range []string{"least_conn", "p2c"} {
		t.Run(alg, func(t *testing.T) {
			hold, free := releaser()
			t.Cleanup(free)
			const held = 4
			var mu sync.Mutex
			seen := 0
			b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen++
				wait := seen <= held
				mu.Unlock()
				if wait {
					<-hold
				}
			})
			cb := startBackend(t, "c", nil)
			dead := freeAddr(t)
			px := startProxy(t, retryYAML(alg, []string{b.addr()}, nil, "retries: { attempts: 2 }\ntimeouts: { response: 30s }\n"))
			var wg sync.WaitGroup
			for range held {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &http.Client{Timeout: 20 * time.Second}
					if resp, err := c.Get("http://" + px.addr + "/held"); err == nil {
						resp.Body.Close()
					}
				}()
			}
			t.Cleanup(wg.Wait)
			t.Cleanup(free) // runs before wg.Wait
			waitFor(t, "held requests at b", 5*time.Second, func() bool { return b.hits.Load() == held })
			apply(t, px, retryYAML(alg, []string{dead, b.addr(), cb.addr()}, nil, "retries: { attempts: 2 }\ntimeouts: { response: 30s }\n"))
			if got := stateOf(t, px, b.addr()).InFlight; got != held {
				t.Fatalf("b in flight after the reload = %d, want %d", got, held)
			}
			c := testClient(t)
			const n = 60
			for i := range n {
				if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
					t.Fatalf("request %d = %d, want 200", i, code)
				}
			}
			if extra := b.hits.Load() - held; extra != 0 {
				t.Errorf("b (%d in flight) took %d of %d requests while c sat idle (c took %d): retries from the refusing backend went to the next one listed, not the least loaded", held, extra, n, cb.hits.Load())
			}
		})
	}
}

// holdThenBreak is a backend handler that waits for hold to close, then
// breaks the connection without an answer (a GET is retried), and breaks
// at once once hold is closed.
func holdThenBreak(hold chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		<-hold
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
			}
		}
	}
}

// sendUntil sends GETs to px in the background until one reaches a (whose
// handler holds it), and delivers that one's status (0 on error).
func sendUntil(px *testProxy, a *testBackend) chan int {
	status := make(chan int, 1)
	started := a.hits.Load()
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		for {
			resp, err := c.Get("http://" + px.addr + "/x")
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			if a.hits.Load() == started {
				continue // went elsewhere: try again until a holds one
			}
			status <- resp.StatusCode
			return
		}
	}()
	return status
}

// TestRetryAfterSettingsReloadGoesBackToFailedBackend: a reload that
// changes an upstream setting (here timeouts.response) gives every backend
// a new client and drains the old ones; those with nothing in flight close
// at once. A GET that began before the reload keeps its snapshot, whose
// targets hold the old clients. When its backend a breaks the connection,
// the retry's skip over closed clients passes b (closed: replaced, not
// gone) and wraps around to a, the backend that just failed, or, once a's
// old client is closed too, gives up with a's error. Either way the
// client gets 502 although b is healthy and still in the pool; any
// routine reload of timeouts or limits turns every retryable failure in
// flight into a failed request. (The retry could pick from the current
// snapshot, or use b's old client, which still works.)
func TestRetryAfterSettingsReloadGoesBackToFailedBackend(t *testing.T) {
	hold, free := releaser()
	t.Cleanup(free)
	a := startBackend(t, "a", holdThenBreak(hold))
	b := startBackend(t, "b", nil)
	yml := func(response string) string {
		return poolYAML("round_robin", []*testBackend{a, b}, nil) +
			"drain_timeout: 30s\nretries: { attempts: 2 }\ntimeouts: { response: " + response + " }\n"
	}
	px := startProxy(t, yml("5s"))
	status := sendUntil(px, a)
	waitFor(t, "a GET held by a", 5*time.Second, func() bool { return a.hits.Load() == 1 })
	apply(t, px, yml("6s"))
	waitFor(t, "b's old client drained", 5*time.Second, func() bool { return len(leavingOf(t, px, b.addr())) == 0 })
	bBefore := b.hits.Load()
	free()
	got := awaitStatus(t, status)
	if got != 200 || b.hits.Load() == bBefore {
		t.Errorf("GET whose backend broke the connection after a settings reload = %d (a tried %d times, b %d); want 200 from b, which is healthy and still in the pool",
			got, a.hits.Load(), b.hits.Load()-bBefore)
	}
}

// TestRetrySkipOfRemovedBackendLandsOnFailedOne: pool [b, c, a]
// (c weight 1000); a GET is held at a, then a reload removes c, which has
// nothing in flight and closes. When a breaks the connection the retry
// pick lands on c (1000 of 1002), which is skipped as closed by moving to
// the next index, a: the backend that just failed, while b is healthy.
// The skip loop checks only `closed`, never `last`. The client gets 502.
// (Spurious pass: when the pick is b, about 1 in 1000.)
func TestRetrySkipOfRemovedBackendLandsOnFailedOne(t *testing.T) {
	hold, free := releaser()
	t.Cleanup(free)
	a := startBackend(t, "a", holdThenBreak(hold))
	b := startBackend(t, "b", nil)
	cb := startBackend(t, "c", nil)
	extra := "drain_timeout: 30s\nretries: { attempts: 2 }\n"
	px := startProxy(t, retryYAML("round_robin", []string{b.addr(), cb.addr(), a.addr()}, []int{1, 1000, 1}, extra))
	status := sendUntil(px, a)
	waitFor(t, "a GET held by a", 10*time.Second, func() bool { return a.hits.Load() == 1 })
	apply(t, px, retryYAML("round_robin", []string{b.addr(), a.addr()}, []int{1, 1}, extra))
	waitFor(t, "c drained", 5*time.Second, func() bool { return len(leavingOf(t, px, cb.addr())) == 0 })
	bBefore := b.hits.Load()
	free()
	got := awaitStatus(t, status)
	if got != 200 {
		t.Errorf("GET whose backend broke the connection after c was removed = %d (a tried %d times, b %d); want 200 from b",
			got, a.hits.Load(), b.hits.Load()-bBefore)
	}
}

// TestRetryAtConnLimitReturnsToFullBackend: the same as
// TestRetryThirdAttemptReturnsToFirstFailure with sluice's own
// connection limit: limits.max_conns_per_backend: 1, a and b each busy
// with one request, c free, retries.attempts: 3. "No connection free" is
// retried as certain to have done no work, and three tries always reach c
// if none is repeated; but the third try may go back to the backend the
// first found full, and the client gets 503 while c sits idle.
func TestRetryAtConnLimitReturnsToFullBackend(t *testing.T) {
	hold, free := releaser()
	holdAll := func(w http.ResponseWriter, r *http.Request) { <-hold }
	a := startBackend(t, "a", holdAll)
	b := startBackend(t, "b", holdAll)
	cb := startBackend(t, "c", nil)
	extra := "retries: { attempts: 3 }\nlimits: { max_conns_per_backend: 1 }\ntimeouts: { response: 30s }\n"
	px := startProxy(t, retryYAML("round_robin", []string{a.addr(), b.addr()}, nil, extra))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(free) // runs before wg.Wait
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 20 * time.Second}
			if resp, err := c.Get("http://" + px.addr + "/held"); err == nil {
				resp.Body.Close()
			}
		}()
		waitFor(t, "a request held", 5*time.Second, func() bool { return a.hits.Load()+b.hits.Load() == int64(i+1) })
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Fatalf("held: a %d, b %d, want one each", a.hits.Load(), b.hits.Load())
	}
	apply(t, px, retryYAML("round_robin", []string{a.addr(), b.addr(), cb.addr()}, nil, extra))
	c := testClient(t)
	const n = 150
	failed := 0
	for range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			failed++
		}
	}
	if failed != 0 {
		t.Errorf("%d of %d requests failed with 3 attempts, a and b at their connection limit and c free; want 0 (c took %d)", failed, n, cb.hits.Load())
	}
}

// TestRetryMetricsAccount (a corner checked): with three
// attempts over two refusing backends and a working one, every retry
// follows exactly one connect error, except the last error of a request
// that ran out of attempts, and sluice_requests_total counts each request
// once, on the backend that answered or failed last.
func TestRetryMetricsAccount(t *testing.T) {
	good := startBackend(t, "good", nil)
	d1, d2 := freeAddr(t), freeAddr(t)
	m := metrics.New("test")
	px := startProxyWith(t, retryYAML("random", []string{d1, d2, good.addr()}, nil, "retries: { attempts: 3 }\n"), m)
	c := testClient(t)
	const n = 100
	failed := 0
	for range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			failed++
		}
	}
	retries := reviewSum(gatherCounts(t, m, "sluice_retries_total"))
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	connect := reviewSum(errs, `backend="`+d1+`"`, `kind="connect"`) + reviewSum(errs, `backend="`+d2+`"`, `kind="connect"`)
	if retries != connect-float64(failed) {
		t.Errorf("retries_total = %v, connect errors = %v, failed requests = %d: want retries = errors - failed", retries, connect, failed)
	}
	req := gatherCounts(t, m, "sluice_requests_total")
	if v := reviewSum(req); v != n {
		t.Errorf("requests_total over all rows = %v, want %d", v, n)
	}
	if v := reviewSum(req, `backend="`+good.addr()+`"`); v != float64(n-failed) || int64(v) != good.hits.Load() {
		t.Errorf("requests_total on good = %v, good's hits %d, want %d", v, good.hits.Load(), n-failed)
	}
}

// releaser returns a channel held requests wait on and the function that
// closes it, safe to call more than once (a test's cleanup calls it too).
func releaser() (chan struct{}, func()) {
	hold := make(chan struct{})
	var once sync.Once
	return hold, func() { once.Do(func() { close(hold) }) }
}

// awaitStatus is the status a held request's client got, failing the test
// after 5 s.
func awaitStatus(t *testing.T, status <-chan int) int {
	t.Helper()
	select {
	case got := <-status:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("no answer in 5s")
		return 0
	}
}
