package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
	"sluice/metrics"
)

// stormR21Outcome counts what the storm's clients got, per route.
type stormR21Outcome struct {
	mu       sync.Mutex
	answered map[string]int // route prefix -> requests answered (any status)
	codes    map[string]int // "route code" -> count
	byH0     int            // 200s on /c/ from h0
	bad      []string
}

func (o *stormR21Outcome) add(route string, code int) {
	o.mu.Lock()
	o.answered[route]++
	o.codes[fmt.Sprintf("%s %d", route, code)]++
	o.mu.Unlock()
}

func (o *stormR21Outcome) fail(s string) {
	o.mu.Lock()
	o.bad = append(o.bad, s)
	o.mu.Unlock()
}

// stormR21Gen draws one random config: pool main (route /c/) always has
// h0 at weight >= 1, undrained; pool solo (route /s/) always has h1
// alone; other pools and routes come and go, are renamed and re-pointed.
type stormR21Gen struct {
	rnd               *rand.Rand
	h0, h1, slow, bad string
	extra             []string
}

func (g *stormR21Gen) pick(choices ...string) string { return choices[g.rnd.IntN(len(choices))] }

func (g *stormR21Gen) yaml() string {
	r := g.rnd
	var b strings.Builder
	algos := []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev", "sticky"}
	extraPools := []string{}
	for i := range 3 {
		if r.IntN(2) == 0 {
			extraPools = append(extraPools, fmt.Sprintf("x%d", i))
		}
	}
	b.WriteString("routes:\n")
	b.WriteString("  - { match: { path_prefix: /c/ }, pool: main }\n")
	b.WriteString("  - { match: { path_prefix: /s/ }, pool: solo }\n")
	for _, p := range extraPools {
		fmt.Fprintf(&b, "  - { match: { path_prefix: /%s/ }, pool: %s }\n", p, p)
	}
	if r.IntN(3) > 0 { // /r/ exists two times in three, through any pool
		fmt.Fprintf(&b, "  - { match: { path_prefix: %s }, pool: %s }\n",
			g.pick("/r/", "/r/", "/r/x"), g.pick(append([]string{"main", "solo"}, extraPools...)...))
	}
	pool := func(name, algo string, addrs []string, weights []int, withSticky bool) {
		fmt.Fprintf(&b, "  %s:\n    algorithm: %s\n", name, algo)
		if algo == "ring_hash" || algo == "maglev" {
			b.WriteString("    hash_key: " + g.pick("header:X-Id", "path", "cookie:k") + "\n")
		}
		if algo == "maglev" {
			b.WriteString("    maglev_table_size: " + g.pick("1021", "2039") + "\n")
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "    health_check: { type: http, path: %s, interval: %s, timeout: 500ms }\n", g.pick("/hz", "/hz2"), g.pick("50ms", "80ms"))
		}
		if withSticky && algo != "sticky" && r.IntN(2) == 0 {
			fmt.Fprintf(&b, "    sticky: { cookie: aff_%s%s }\n", name, g.pick("", ", secret: s1", ", secret: s2"))
		}
		if r.IntN(2) == 0 {
			b.WriteString("    slow_start: " + g.pick("300ms", "1s") + "\n")
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "    outlier_detection: { consecutive_failures: %d, base_ejection_time: %s, max_ejection_percent: %d }\n",
				2+r.IntN(3), g.pick("100ms", "300ms"), []int{0, 50, 100}[r.IntN(3)])
		}
		if r.IntN(4) == 0 {
			b.WriteString("    panic_threshold: 50%\n")
		}
		b.WriteString("    backends:\n")
		for i, a := range addrs {
			fmt.Fprintf(&b, "      - { address: %s, weight: %d }\n", a, weights[i])
		}
	}
	b.WriteString("pools:\n")
	// main: h0 always, the others at random, reordered and reweighted.
	addrs, weights := []string{g.h0}, []int{1 + r.IntN(3)}
	for _, a := range append([]string{g.h1, g.slow, g.bad}, g.extra...) {
		if r.IntN(2) == 0 {
			addrs, weights = append(addrs, a), append(weights, r.IntN(4))
		}
	}
	r.Shuffle(len(addrs), func(i, j int) {
		addrs[i], addrs[j] = addrs[j], addrs[i]
		weights[i], weights[j] = weights[j], weights[i]
	})
	mainAlgo := algos[r.IntN(len(algos))]
	pool("main", mainAlgo, addrs, weights, true)
	soloAlgo := algos[r.IntN(len(algos)-1)] // not sticky: its default cookie may be main's
	pool("solo", soloAlgo, []string{g.h1}, []int{1 + r.IntN(3)}, true)
	for _, p := range extraPools {
		// h0 always (a pool of "bad" alone may be ejected or unhealthy:
		// 503s that are right).
		as, ws := []string{g.h0}, []int{1 + r.IntN(2)}
		for _, a := range []string{g.h1, g.slow, g.bad} {
			if r.IntN(2) == 0 {
				as, ws = append(as, a), append(ws, 1+r.IntN(2))
			}
		}
		r.Shuffle(len(as), func(i, j int) { as[i], as[j] = as[j], as[i]; ws[i], ws[j] = ws[j], ws[i] })
		pool(p, algos[r.IntN(len(algos)-1)], as, ws, false)
	}
	fmt.Fprintf(&b, "drain_timeout: %s\n", g.pick("500ms", "1s"))
	fmt.Fprintf(&b, "retries: { attempts: %d }\n", 2+r.IntN(2))
	fmt.Fprintf(&b, "timeouts: { connect: %s, response: %s, upstream_idle: %s }\n",
		g.pick("1s", "2s"), g.pick("3s", "4s"), g.pick("10s", "20s"))
	fmt.Fprintf(&b, "limits: { max_conns_per_backend: %s, max_response_bytes: %s }\n",
		g.pick("64", "100", "128"), g.pick("1048576", "2097152"))
	return b.String()
}

// TestReloadStorm: 12 keep-alive clients (GETs and small POSTs,
// some with cookie jars) run through the proxy while random configs land
// every few milliseconds for 4 s: backends of the clients' pool added,
// removed, reordered and reweighted (h0, healthy, always in, weight >= 1),
// algorithms switched among all eight, timeouts and limits changed (new
// upstream clients), pools and routes added, removed, renamed and
// re-pointed, slow_start, outlier_detection, panic_threshold and sticky
// toggled, health checks added and removed. Backends: four healthy, one
// slow (40 ms, one in ten 700 ms: past drain_timeout, overdue drains),
// one that answers 500 one time in five. Route /c/ (pool main) and /s/ (pool solo, one healthy
// backend) exist throughout: every request on them gets 200 unless the
// failing backend's own 500 is passed on; /r/ may also get 404. No
// request hangs; sluice_requests_total for /s/ (whose series are never
// removed) equals the requests answered there and no series sums to more
// than was answered; the in-flight gauge, every route's and every
// upstream client's in-flight counts are 0 at the end; Status lists
// exactly the last config's backends once drains end; goroutines and
// fds come back.
func TestReloadStorm(t *testing.T) {
	// Which backends each request (by X-Id) reached, to explain a failure.
	var seenMu sync.Mutex
	seen := map[string][]string{}
	traced := func(name string, h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if id := r.Header.Get("X-Id"); id != "" {
				seenMu.Lock()
				seen[id] = append(seen[id], name)
				seenMu.Unlock()
			}
			h(w, r)
		}
	}
	okHandler := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}
	h0, _ := startChurnBackend(t, "h0", traced("h0", okHandler))
	h1, _ := startChurnBackend(t, "h1", traced("h1", okHandler))
	var slowN atomic.Int64
	slow, _ := startChurnBackend(t, "slow", traced("slow", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d := 40 * time.Millisecond
		if slowN.Add(1)%10 == 0 {
			d = 700 * time.Millisecond // past drain_timeout: overdue drains
		}
		time.Sleep(d)
		_, _ = io.WriteString(w, "ok")
	}))
	var badN atomic.Int64
	bad, _ := startChurnBackend(t, "bad", traced("bad", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// (No resets: a GET's retry during a settings reload fails,
		// TestRetryDuringSettingsReload.)
		if badN.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "flaky-fail")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	var extra []string
	for i := range 2 {
		e, _ := startChurnBackend(t, fmt.Sprintf("e%d", i), traced(fmt.Sprintf("e%d", i), okHandler))
		extra = append(extra, e.addr())
	}
	gen := &stormR21Gen{rnd: rand.New(rand.NewPCG(stormR21Seed(), 2102)), h0: h0.addr(), h1: h1.addr(), slow: slow.addr(), bad: bad.addr(), extra: extra}
	m := metrics.New("test")
	first := gen.yaml()
	px := startProxyWith(t, first, m)

	// Every upstream (client) the controller ever held, sampled after
	// each reload from its members, drains and overdue drains.
	var upsMu sync.Mutex
	ups := map[*upstream]bool{}
	sample := func() {
		_ = px.ctrl.do(context.Background(), func() error {
			upsMu.Lock()
			defer upsMu.Unlock()
			for _, mb := range px.ctrl.members {
				ups[mb.up] = true
			}
			for _, d := range append(slices.Clone(px.ctrl.draining), px.ctrl.overdue...) {
				ups[d.up] = true
			}
			return nil
		})
	}
	sample()

	runtimeSettle := func() { time.Sleep(100 * time.Millisecond) }
	runtimeSettle()
	baseG, _ := ourGoroutines()
	baseFD := openFdsR21(t)

	out := &stormR21Outcome{answered: map[string]int{}, codes: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), stormR21For())
	defer cancel()
	var wg sync.WaitGroup
	var transports []*http.Transport
	routes := []string{"/c/", "/c/", "/c/", "/c/", "/c/", "/c/", "/s/", "/s/", "/s/", "/s/", "/r/", "/r/"}
	for i, route := range routes {
		tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}
		transports = append(transports, tr)
		c := &http.Client{Transport: tr, Timeout: 6 * time.Second}
		if i%2 == 0 {
			c.Jar, _ = cookiejar.New(nil)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				url := fmt.Sprintf("http://%s%sq%d?i=%d", px.addr, route, i, n)
				var req *http.Request
				if n%3 == 2 {
					req, _ = http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte("small body "+url)))
				} else {
					req, _ = http.NewRequest(http.MethodGet, url, nil)
				}
				req.Header.Set("X-Id", fmt.Sprintf("%d-%d", i, n))
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					out.fail(fmt.Sprintf("%s %s: no answer after %v: %v", req.Method, url, time.Since(start).Round(time.Millisecond), err))
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				out.add(route, resp.StatusCode)
				by := resp.Header.Get("X-Backend")
				switch {
				case resp.StatusCode == 200:
					if route == "/c/" && by == "h0" {
						out.mu.Lock()
						out.byH0++
						out.mu.Unlock()
					}
				case resp.StatusCode == 500 && by == "bad" && string(body) == "flaky-fail":
				case resp.StatusCode == 404 && route == "/r/" && by == "":
				default:
					id := req.Header.Get("X-Id")
					seenMu.Lock()
					reached := slices.Clone(seen[id])
					seenMu.Unlock()
					out.fail(fmt.Sprintf("%s %s: %d from %q: %q (reached %v)", req.Method, url, resp.StatusCode, by, strings.TrimSpace(string(body)), reached))
				}
			}
		}()
	}
	reloads := 0
	var lastYAML string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			y := gen.yaml()
			cfg, err := config.Parse("t.yaml", []byte(y))
			if err != nil {
				t.Errorf("generated config refused: %v\n%s", err, y)
				return
			}
			if err := px.ctrl.Apply(context.Background(), cfg); err != nil {
				t.Errorf("Apply: %v", err)
				return
			}
			lastYAML = y
			reloads++
			sample()
			time.Sleep(time.Duration(2+gen.rnd.IntN(6)) * time.Millisecond)
		}
	}()
	wg.Wait()
	sample()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}

	out.mu.Lock()
	total := 0
	for _, n := range out.answered {
		total += n
	}
	keys := make([]string, 0, len(out.codes))
	for k := range out.codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var codes []string
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%s:%d", k, out.codes[k]))
	}
	t.Logf("%d requests answered, %d reloads, %d upstream clients, codes %v", total, reloads, len(ups), codes)
	for i, s := range out.bad {
		if i == 20 {
			t.Errorf("... and %d more", len(out.bad)-20)
			break
		}
		t.Errorf("request failed: %s", s)
	}
	answered := maps2(out.answered)
	byH0 := out.byH0
	out.mu.Unlock()

	// Metrics: /s/'s rows are never removed; nothing counts more than
	// was answered.
	counts := gatherCounts(t, m, "sluice_requests_total")
	var sumS, sumAll float64
	for k, v := range counts {
		sumAll += v
		if strings.HasPrefix(k, `route="/s/",`) {
			sumS += v
		}
	}
	if int(sumS) != answered["/s/"] {
		t.Errorf("sluice_requests_total{route=\"/s/\"} sums to %v, %d requests answered there", sumS, answered["/s/"])
	}
	if got := counts[`route="/c/",pool="main",backend="`+h0.addr()+`",code="2xx"`]; int(got) != byH0 {
		t.Errorf("sluice_requests_total{route=\"/c/\",backend=h0,code=\"2xx\"} = %v, %d 200s on /c/ came from h0", got, byH0)
	}
	if int(sumAll) > total {
		t.Errorf("sluice_requests_total sums to %v, more than the %d requests answered", sumAll, total)
	}
	if g := gatherCounts(t, m, "sluice_requests_in_flight")[""]; g != 0 {
		t.Errorf("sluice_requests_in_flight = %v after every request was answered, want 0", g)
	}

	// Drains end; Status lists the last config's backends, no more.
	cfg := mustParse(t, lastYAML)
	want := map[string][]string{}
	for name, pc := range cfg.Pools {
		for _, b := range pc.Backends {
			want[name] = append(want[name], config.BackendAddress(b.Address))
		}
		sort.Strings(want[name])
	}
	var got map[string][]string
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := px.ctrl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got = map[string][]string{}
		for _, p := range st {
			got[p.Name] = []string{}
			for _, b := range p.Backends {
				got[p.Name] = append(got[p.Name], b.Address)
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Status after the drains = %v, want the last config's %v", got, want)
	}
	upsMu.Lock()
	for up := range ups {
		if n := up.client.InFlight(); n != 0 {
			t.Errorf("upstream client of %s/%s: in flight %d at the end, want 0", up.backend.Pool, up.backend.Addr, n)
		}
		if n := up.backend.InFlight(); n != 0 {
			t.Errorf("backend %s/%s: in flight %d at the end, want 0", up.backend.Pool, up.backend.Addr, n)
		}
	}
	upsMu.Unlock()
	_ = px.ctrl.do(context.Background(), func() error {
		for k, n := range px.ctrl.seriesRoutes {
			if v := n.Load(); v != 0 {
				t.Errorf("route %q through %q: in flight %d at the end, want 0", k.name, k.pool, v)
			}
		}
		return nil
	})

	// The first config again (its health probes as at the start), with
	// a short idle timeout that closes every upstream connection:
	// goroutines and fds come back to what they were before the load.
	apply(t, px, strings.NewReplacer("upstream_idle: 10s", "upstream_idle: 300ms", "upstream_idle: 20s", "upstream_idle: 300ms").Replace(first))
	checkChurnGoroutines(t, baseG)
	var fds int
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if fds = openFdsR21(t); fds <= baseFD {
			break
		}
	}
	if fds > baseFD {
		t.Errorf("open fds %d after settling, %d before the load", fds, baseFD)
		if es, err := os.ReadDir("/proc/self/fd"); err == nil {
			var ls []string
			for _, e := range es {
				l, _ := os.Readlink("/proc/self/fd/" + e.Name())
				ls = append(ls, l)
			}
			t.Logf("fds: %v", ls)
		}
	}
}

func maps2(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// stormR21Seed is the storm's seed: fixed, but STORM_SEED overrides it
// for exploration.
func stormR21Seed() uint64 {
	if v, err := strconv.ParseUint(os.Getenv("STORM_SEED"), 10, 64); err == nil {
		return v
	}
	return 2101
}

func stormR21For() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("STORM_FOR")); err == nil {
		return d
	}
	return 4 * time.Second
}
