package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
	"sluice/metrics"
)

// churnLedger counts what the backends received and what clients got.
type churnLedger struct {
	mu       sync.Mutex
	posts    map[string]int // POST id -> receipts over all backends
	codes    map[int]int
	failures []churnFailure
}

// churnFailure is one request that did not get 200.
type churnFailure struct {
	method, id string // id: the POST's X-Id
	code       int
	err        error
	at         time.Time
}

func (f churnFailure) String() string {
	return fmt.Sprintf("%s %s at %s: %d %v", f.method, f.id, f.at.Format("05.000"), f.code, f.err)
}

func newChurnLedger() *churnLedger {
	return &churnLedger{posts: map[string]int{}, codes: map[int]int{}}
}

func (l *churnLedger) received(id string) {
	l.mu.Lock()
	l.posts[id]++
	l.mu.Unlock()
}

func (l *churnLedger) got(code int, err error, method, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[code]++
	if err != nil || code != 200 {
		l.failures = append(l.failures, churnFailure{method, id, code, err, time.Now()})
	}
}

// check reports POSTs that reached backends more than once, and, unless
// failuresOK, any request that did not get 200; it returns the total.
func (l *churnLedger) check(t *testing.T, failuresOK func(churnFailure) bool) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range l.posts {
		if n > 1 {
			t.Errorf("POST %s reached backends %d times, want once", id, n)
		}
	}
	total, bad := 0, 0
	for _, n := range l.codes {
		total += n
	}
	for _, f := range l.failures {
		if failuresOK != nil && failuresOK(f) {
			continue
		}
		if bad++; bad <= 20 {
			t.Errorf("request failed: %s", f)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d requests failed (codes %v)", bad, total, l.codes)
	}
	return total
}

// churnOpen counts a backend's open connections as its server sees them.
type churnOpen struct{ n atomic.Int64 }

// startChurnBackend is startBackend with a count of open connections.
func startChurnBackend(t *testing.T, name string, h http.HandlerFunc) (*testBackend, *churnOpen) {
	t.Helper()
	o := &churnOpen{}
	b := &testBackend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		h(w, r)
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.n.Add(1)
			b.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.n.Add(-1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b, o
}

// churnHandler records each POST's X-Id and answers 200.
func churnHandler(l *churnLedger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			l.received(r.Header.Get("X-Id"))
		}
		if d := r.URL.Query().Get("sleep"); d != "" {
			if dur, err := time.ParseDuration(d); err == nil {
				time.Sleep(dur)
			}
		}
		_, _ = io.WriteString(w, "ok")
	}
}

// churnLoad runs keep-alive GET, non-keep-alive GET and keep-alive POST
// clients against url until ctx ends.
func churnLoad(ctx context.Context, t *testing.T, url string, l *churnLedger, clients int) (wait func()) {
	var wg sync.WaitGroup
	var ids atomic.Int64
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableKeepAlives: i%3 == 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				var req *http.Request
				id := ""
				if i%3 == 2 {
					id = fmt.Sprintf("%s#c%d-%d", url, i, ids.Add(1))
					req, _ = http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte("payload "+id)))
					req.Header.Set("X-Id", id)
				} else {
					req, _ = http.NewRequest(http.MethodGet, url, nil)
				}
				resp, err := c.Do(req)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				l.got(code, err, req.Method, id)
			}
		}()
	}
	return wg.Wait
}

// churnYAML is one pool of the given backends (weights), algorithm, with
// drain_timeout and the response timeout given.
func churnYAML(algorithm string, addrs []string, weights []int, response string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "routes:\n  - pool: p\npools:\n  p:\n    algorithm: %s\n", algorithm)
	if algorithm == "ring_hash" || algorithm == "maglev" {
		b.WriteString("    hash_key: header:X-Id\n")
	}
	b.WriteString("    backends:\n")
	for i, a := range addrs {
		fmt.Fprintf(&b, "      - { address: %s, weight: %d }\n", a, weights[i])
	}
	fmt.Fprintf(&b, "drain_timeout: 5s\ntimeouts: { response: %s, upstream_idle: 30s }\n", response)
	return b.String()
}

// TestChurnReloadsAndAdmin: under steady load from keep-alive and
// non-keep-alive GET clients and keep-alive POST clients, reloads add and
// remove backends, change weights, algorithms and upstream settings, while
// the admin API drains, undrains and sets weights of the churned backends.
// One backend (stable) stays in the pool, undrained, all along. Every
// request must get 200, every POST reach a backend exactly once; then
// everything drains, and connections and goroutines go back.
func TestChurnReloadsAndAdmin(t *testing.T) {
	l := newChurnLedger()
	stable, stableOpen := startChurnBackend(t, "stable", churnHandler(l))
	var churned []*testBackend
	var churnedOpen []*churnOpen
	for i := range 3 {
		b, o := startChurnBackend(t, fmt.Sprintf("c%d", i), churnHandler(l))
		churned, churnedOpen = append(churned, b), append(churnedOpen, o)
	}
	m := metrics.New("test")
	px := startProxyWith(t, churnYAML("round_robin", []string{stable.addr()}, []int{1}, "5s"), m)
	base, _ := ourGoroutines()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	wait := churnLoad(ctx, t, "http://"+px.addr+"/x", l, 6)

	algos := []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev"}
	rnd := rand.New(rand.NewPCG(1, 2))
	var churnWG sync.WaitGroup
	churnWG.Add(2)
	go func() { // reloads
		defer churnWG.Done()
		for ctx.Err() == nil {
			addrs, weights := []string{stable.addr()}, []int{1 + rnd.IntN(3)}
			for _, b := range churned {
				if rnd.IntN(2) == 0 {
					addrs = append(addrs, b.addr())
					weights = append(weights, rnd.IntN(4))
				}
			}
			rnd.Shuffle(len(addrs), func(i, j int) {
				addrs[i], addrs[j] = addrs[j], addrs[i]
				weights[i], weights[j] = weights[j], weights[i]
			})
			resp := []string{"5s", "6s"}[rnd.IntN(2)]
			cfg, err := config.Parse("t.yaml", []byte(churnYAML(algos[rnd.IntN(len(algos))], addrs, weights, resp)))
			if err != nil {
				t.Error(err)
				return
			}
			_ = px.ctrl.Apply(context.Background(), cfg)
			time.Sleep(time.Duration(5+rnd.IntN(20)) * time.Millisecond)
		}
	}()
	go func() { // admin calls on the churned backends (may be absent)
		defer churnWG.Done()
		r := rand.New(rand.NewPCG(3, 4))
		for ctx.Err() == nil {
			b := churned[r.IntN(len(churned))]
			switch r.IntN(3) {
			case 0:
				_ = px.ctrl.SetDrain(context.Background(), "p", b.addr(), true)
			case 1:
				_ = px.ctrl.SetDrain(context.Background(), "p", b.addr(), false)
			case 2:
				_ = px.ctrl.SetWeight(context.Background(), "p", b.addr(), uint32(r.IntN(3)))
			}
			time.Sleep(time.Duration(5+r.IntN(20)) * time.Millisecond)
		}
	}()
	wait()
	churnWG.Wait()

	total := l.check(t, nil)
	t.Logf("%d requests, %d POSTs", total, len(l.posts))

	// Back to the stable backend alone: everything else drains.
	apply(t, px, churnYAML("round_robin", []string{stable.addr()}, []int{1}, "5s"))
	waitFor(t, "the churned backends drained", 7*time.Second, func() bool {
		st, err := px.ctrl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(st) == 1 && len(st[0].Backends) == 1
	})
	for i, b := range churned {
		if exported(t, m, "backend", b.addr()) {
			t.Errorf("series of removed backend %s still exported after its drain", b.addr())
		}
		if n := churnedOpen[i].n.Load(); n != 0 {
			// (The server sees a close at once: its read returns EOF.)
			time.Sleep(200 * time.Millisecond)
			if n := churnedOpen[i].n.Load(); n != 0 {
				t.Errorf("removed backend %s still has %d connections open from sluice after its drain", b.addr(), n)
			}
		}
	}
	if got, want := backendGauge(t, m, "sluice_upstream_connections", stable.addr(), ""), float64(stableOpen.n.Load()); got != want {
		t.Errorf("sluice_upstream_connections of the stable backend = %v, its server sees %v open", got, want)
	}
	checkChurnGoroutines(t, base)
}

// ourGoroutines counts the goroutines with a frame in sluice's code (not
// the test's own), and returns their stacks.
func ourGoroutines() (int, string) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var out strings.Builder
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sluice/") && !strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "testing.(*T).Run") {
			n++
			out.WriteString(g + "\n\n")
		}
	}
	return n, out.String()
}

// checkChurnGoroutines waits up to 5 s for sluice's goroutines to fall
// back to base.
func checkChurnGoroutines(t *testing.T, base int) {
	t.Helper()
	var n int
	var stacks string
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, stacks = ourGoroutines()
		if n <= base || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n > base {
		t.Errorf("sluice goroutines %d after the churn, %d before\n%s", n, base, stacks)
	}
}
