package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/metrics"
)

// r25ProbesBackend answers /healthz with its health code (counting
// each probe) and everything else with 200.
type r25ProbesBackend struct {
	*testBackend
	health  atomic.Int32
	probes  atomic.Int64
	traffic atomic.Int64
}

func r25ProbesNewBackend(t *testing.T, name string) *r25ProbesBackend {
	t.Helper()
	b := &r25ProbesBackend{}
	b.health.Store(200)
	b.testBackend = startBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.probes.Add(1)
			w.WriteHeader(int(b.health.Load()))
			return
		}
		b.traffic.Add(1)
	})
	return b
}

// r25ProbesRawBackend answers every request on its connections with
// answer and closes, counting the requests whose target is /healthz.
func r25ProbesRawBackend(t *testing.T, answer string) (addr string, probes *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probes = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				first := true
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if first && strings.HasPrefix(line, "GET /healthz ") {
						probes.Add(1)
					}
					first = false
					if line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(answer))
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), probes
}

// TestProbesRefusedHeadFailsProbe: README (Active checks) has the
// probe fail what the data plane refuses ("As the data plane, the probe
// also fails a head with a line that is not a field line ..."; before
// session 23 "such a head passed while every request to the backend got
// 502"). A backend whose every answer has a head over 16 KiB (README,
// Error codes, 502: "sent a response head over 16 KiB"), an HTTP/1.0
// answer with a Transfer-Encoding, two Content-Lengths that differ, a
// Transfer-Encoding other than chunked, or more than 32 names in
// Connection gets 502 for every request routed to it, yet passes every probe and
// stays healthy, in rotation. Fails.
func TestProbesRefusedHeadFailsProbe(t *testing.T) {
	var pad strings.Builder
	for i := range 20 {
		fmt.Fprintf(&pad, "X-Pad-%d: %s\r\n", i, strings.Repeat("p", 1000))
	}
	var names []string
	for i := range 33 {
		names = append(names, fmt.Sprintf("x-n%d", i))
	}
	for _, tt := range []struct{ name, answer string }{
		{"head over 16 KiB", "HTTP/1.1 200 OK\r\n" + pad.String() + "Content-Length: 2\r\nConnection: close\r\n\r\nok"},
		{"HTTP/1.0 with Transfer-Encoding", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{"two Content-Lengths that differ", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{"Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"},
		{"33 names in Connection", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, " + strings.Join(names, ", ") + "\r\n\r\nok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad, probes := r25ProbesRawBackend(t, tt.answer)
			// The premise, with no health check: the data plane answers
			// 502 for this backend.
			plain := startProxy(t, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p:\n    backends: [{ address: %s }]\nretries: { attempts: 1 }\n", bad))
			if code, _, _ := get(t, testClient(t), "http://"+plain.addr+"/", nil); code != http.StatusBadGateway {
				t.Fatalf("the data plane answered %d for this backend, want 502: the premise does not hold", code)
			}
			// With a health check, the probe fails it as the data plane
			// does: it leaves rotation.
			good := r25ProbesNewBackend(t, "good")
			px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }
retries: { attempts: 1 }
`, good.addr(), bad))
			waitFor(t, "a few probes", 3*time.Second, func() bool { return probes.Load() >= 4 })
			if st := stateOf(t, px, bad); st.Healthy {
				t.Errorf("the data plane answers 502 for this backend, yet it passed %d probes and is healthy; want its probe failed as the data plane fails its answers", probes.Load())
			}
		})
	}
}

// TestProbesChecksRemovedThenReadded: README (Active checks): a
// reload that removes a pool's checks brings an unhealthy backend back
// (no probe is left to do so), and one that adds them again probes it
// afresh: a new backend's view, so the first failed probe takes it out at
// once. /admin/pools, sluice_backend_state and the log agree at each step,
// and the probes of the removed checks stop (the backend sees none). Passes.
func TestProbesChecksRemovedThenReadded(t *testing.T) {
	a := r25ProbesNewBackend(t, "a")
	b := r25ProbesNewBackend(t, "b")
	b.health.Store(503)
	yml := func(check string) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
%s`, a.addr(), b.addr(), check)
	}
	const check = "    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 5 }\n"
	var lg r23Log
	m := metrics.New("test")
	px := startProxyLogged(t, yml(check), m, nil, zerolog.New(&lg))
	unhealthyLines := func() int {
		return lg.count(`"message":"backend unhealthy"`, `"backend":"`+b.addr()+`"`, `"source":"active"`)
	}
	waitFor(t, "b unhealthy", 3*time.Second, func() bool { return !stateOf(t, px, b.addr()).Healthy })
	if v, _ := gaugeState(t, m, b.addr(), "unhealthy"); v != 1 {
		t.Errorf("sluice_backend_state{unhealthy} = %v, want 1", v)
	}

	apply(t, px, yml(""))
	if st := stateOf(t, px, b.addr()); !st.Healthy || st.HealthReason != "" {
		t.Errorf("checks removed: b healthy=%v reason %q, want healthy with no reason", st.Healthy, st.HealthReason)
	}
	if v, _ := gaugeState(t, m, b.addr(), "healthy"); v != 1 {
		t.Errorf("checks removed: sluice_backend_state{healthy} = %v, want 1", v)
	}
	n := b.probes.Load()
	time.Sleep(250 * time.Millisecond) // five intervals
	if got := b.probes.Load() - n; got != 0 {
		t.Errorf("%d probes after the checks were removed", got)
	}

	apply(t, px, yml(check))
	waitFor(t, "b unhealthy again", 3*time.Second, func() bool { return !stateOf(t, px, b.addr()).Healthy })
	if got := b.probes.Load() - n; got < 1 || got > 2 {
		t.Errorf("re-added checks: unhealthy after %d probes, want 1 (fresh view, first failure; +1 in flight)", got)
	}
	time.Sleep(150 * time.Millisecond)
	if got := unhealthyLines(); got != 2 {
		t.Errorf("%d 'backend unhealthy' lines for b, want 2 (one per run of checks)", got)
	}
	if got := lg.count(`"backend":"`+a.addr()+`"`, `healthy"`); got != 0 {
		t.Errorf("%d health lines for the always-healthy a", got)
	}
}

// TestProbesDiscoveredBackendProbedUntilItLeaves: a DNS-discovered
// backend is probed from its first answer, with its address as Host;
// taken out by its first failed probe; and once it leaves the answer no
// probe reaches it (README "New and vanished backends"). Back in a later
// answer it starts afresh: healthy, out again at its first failed probe,
// and that transition is logged again. Passes.
func TestProbesDiscoveredBackendProbedUntilItLeaves(t *testing.T) {
	a := r25ProbesNewBackend(t, "a")
	d := r25ProbesNewBackend(t, "d")
	yml := `routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    discovery: { dns: { name: svc.test, port: 80, type: A, interval: 10s } }
    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3 }
`
	var lg r23Log
	px := startProxyLogged(t, yml, nil, nil, zerolog.New(&lg))
	cfg := mustParse(t, yml)
	from := *cfg.Pools["p"].Discovery.DNS
	ctx := context.Background()
	set := func(addrs ...string) {
		t.Helper()
		var bs []DiscoveredBackend
		for _, ad := range addrs {
			bs = append(bs, DiscoveredBackend{Address: ad, Weight: 1})
		}
		if err := px.ctrl.SetDiscovered(ctx, "p", from, bs); err != nil {
			t.Fatal(err)
		}
	}
	set(a.addr(), d.addr())
	waitFor(t, "both probed", 3*time.Second, func() bool { return a.probes.Load() >= 2 && d.probes.Load() >= 2 })
	if r, _ := d.lastRequest(); r == nil || r.Host != d.addr() {
		t.Errorf("probe Host = %v, want the discovered address %s", r, d.addr())
	}
	d.health.Store(503)
	n := d.probes.Load()
	waitFor(t, "d unhealthy", 3*time.Second, func() bool { return !stateOf(t, px, d.addr()).Healthy })
	if got := d.probes.Load() - n; got > 5 || got < 3 {
		t.Errorf("d out after %d failed probes, want unhealthy_threshold 3 (+1 in flight)", got)
	}

	set(a.addr())
	n = d.probes.Load()
	time.Sleep(250 * time.Millisecond)
	if got := d.probes.Load() - n; got != 0 {
		t.Errorf("%d probes reached d after it left the answer", got)
	}

	set(a.addr(), d.addr())
	st := stateOf(t, px, d.addr())
	if !st.Healthy {
		// README: a backend that leaves the pool forgets its runtime state.
		t.Errorf("d back in the answer: healthy=%v, want healthy until its first probe", st.Healthy)
	}
	waitFor(t, "d unhealthy again", 3*time.Second, func() bool { return !stateOf(t, px, d.addr()).Healthy })
	if got := d.probes.Load() - n; got < 1 || got > 2 {
		t.Errorf("d back: out after %d probes, want 1 (+1 in flight)", got)
	}
	time.Sleep(100 * time.Millisecond)
	if got := lg.count(`"message":"backend unhealthy"`, `"backend":"`+d.addr()+`"`); got != 2 {
		t.Errorf("%d 'backend unhealthy' lines for d, want 2", got)
	}
}

// TestProbesNoneAfterControllerStops: once the controller's Run has
// returned (shutdown), no probe reaches a backend any more. Passes.
func TestProbesNoneAfterControllerStops(t *testing.T) {
	b := r25ProbesNewBackend(t, "b")
	cfg := mustParse(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    backends: [{ address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 500ms }
`, b.addr()))
	ctrl := NewController(New(), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "probes", 3*time.Second, func() bool { return b.probes.Load() >= 2 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("controller Run did not return")
	}
	n := b.probes.Load()
	time.Sleep(250 * time.Millisecond)
	if got := b.probes.Load() - n; got != 0 {
		t.Errorf("%d probes after the controller stopped", got)
	}
}

// TestProbesReloadKeepingCheckKeepsRhythm: reloads that leave a
// pool's check as it was (other timeouts, which replace the backend's
// client; another route; a DNS answer that repeats itself) do not restart
// its probes: with a 1s interval the backend sees no extra probe. A
// restarted run would probe again within interval/10. Passes.
func TestProbesReloadKeepingCheckKeepsRhythm(t *testing.T) {
	b := r25ProbesNewBackend(t, "b")
	yml := func(resp string, route string) string {
		return fmt.Sprintf(`routes: [{ pool: p%s }]
pools:
  p:
    backends: [{ address: %s }]
    health_check: { path: /healthz, interval: 1s, timeout: 500ms }
timeouts: { response: %s }
`, route, b.addr(), resp)
	}
	px := startProxy(t, yml("5s", ""))
	waitFor(t, "first probe", 3*time.Second, func() bool { return b.probes.Load() >= 1 })
	n := b.probes.Load()
	start := time.Now()
	for _, y := range []string{yml("6s", ""), yml("6s", ", match: { path_prefix: / }"), yml("7s", ""), yml("7s", "")} {
		apply(t, px, y)
		time.Sleep(60 * time.Millisecond)
	}
	// Regular probes come 0.9-1.1s apart, the first of them at least 0.9s
	// after the probe seen before start ended: at most one per 0.9s of
	// the window (a restarted run would add one per reload).
	got, d := b.probes.Load()-n, time.Since(start)
	if allowed := int64((d + 100*time.Millisecond) / (900 * time.Millisecond)); got > allowed {
		t.Errorf("%d probes within %v of 4 reloads that kept the check, want at most %d (the regular ones)", got, d, allowed)
	}
}
