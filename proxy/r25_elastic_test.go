package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"sluice/discovery"
	"sluice/metrics"
)

// r25ElasticDNS is a DNS server on 127.0.0.1 (UDP) answering SRV
// queries for one name with records the test sets, every target being
// lo.test. (A 127.0.0.1, no AAAA). mode makes every answer fail.
type r25ElasticDNS struct {
	addr    string
	name    string
	mu      sync.Mutex
	ports   []int
	mode    string // "", "servfail", "nxdomain", "refused", "empty", "silent"
	queries atomic.Int64
	srv     *dns.Server
}

func r25ElasticStartDNS(t *testing.T, name string) *r25ElasticDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &r25ElasticDNS{addr: pc.LocalAddr().String(), name: name}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(d.serve)}
	done := make(chan struct{})
	go func() { defer close(done); _ = d.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = d.srv.Shutdown(); <-done })
	return d
}

func (d *r25ElasticDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	d.queries.Add(1)
	d.mu.Lock()
	mode, ports := d.mode, append([]int(nil), d.ports...)
	d.mu.Unlock()
	if mode == "silent" {
		return
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	switch mode {
	case "servfail":
		m.Rcode = dns.RcodeServerFailure
	case "nxdomain":
		m.Rcode = dns.RcodeNameError
	case "refused":
		m.Rcode = dns.RcodeRefused
	}
	if mode == "" && len(q.Question) == 1 {
		qq := q.Question[0]
		switch {
		case strings.EqualFold(qq.Name, d.name) && qq.Qtype == dns.TypeSRV:
			for _, p := range ports {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
					Priority: 1, Weight: 1, Port: uint16(p), Target: "lo.test."})
			}
		case strings.EqualFold(qq.Name, "lo.test.") && qq.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
		}
	}
	_ = w.WriteMsg(m)
}

// set makes the SRV answer the given backends (host:port on 127.0.0.1).
func (d *r25ElasticDNS) set(t *testing.T, addrs ...string) {
	t.Helper()
	var ports []int
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	d.mu.Lock()
	d.ports = ports
	d.mu.Unlock()
}

func (d *r25ElasticDNS) setMode(mode string) {
	d.mu.Lock()
	d.mode = mode
	d.mu.Unlock()
}

// r25ElasticYAML is a pool p discovered through d (SRV, interval
// 100ms) with extra pool settings and extra top-level settings.
func r25ElasticYAML(d *r25ElasticDNS, pool, top string) string {
	return "routes: [{ pool: p }]\npools:\n  p:\n    algorithm: round_robin\n" + pool +
		fmt.Sprintf("    discovery: { dns: { name: %s, type: SRV, interval: 100ms, resolver: %q } }\n", d.name, d.addr) + top
}

// r25ElasticWatch runs a discovery watcher for pool p of yml that
// feeds px's controller, as cmd/sluice wires it; it stops at cleanup.
func r25ElasticWatch(t *testing.T, px *testProxy, yml string) (stop func()) {
	t.Helper()
	dc := *mustParse(t, yml).Pools["p"].Discovery.DNS
	ctx, cancel := context.WithCancel(context.Background())
	w := discovery.NewWatcher("p", dc, discovery.WatcherOptions{
		Logger: zerolog.Nop(),
		OnUpdate: func(u discovery.Update) {
			var bs []DiscoveredBackend
			for _, b := range u.Backends {
				bs = append(bs, DiscoveredBackend{Address: b.Address, Weight: b.Weight})
			}
			_ = px.ctrl.SetDiscovered(ctx, u.Pool, dc, bs)
		},
	})
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// r25ElasticBackend is an HTTP backend on 127.0.0.1 that can be
// killed (listener and connections closed) and started again on the
// same port. /healthz answers health; /slow waits for release; anything
// else answers status (200 by default) with its name.
type r25ElasticBackend struct {
	name    string
	addr    string
	hits    atomic.Int64 // non-probe requests
	probes  atomic.Int64
	health  atomic.Int32
	status  atomic.Int32
	slow    atomic.Int64 // /slow requests waiting
	release chan struct{}
	relOnce sync.Once
	mu      sync.Mutex
	srv     *http.Server
	conns   atomic.Int64 // open connections
}

func r25ElasticStartBackend(t *testing.T, name string) *r25ElasticBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &r25ElasticBackend{name: name, addr: ln.Addr().String(), release: make(chan struct{})}
	b.health.Store(200)
	b.status.Store(200)
	b.serve(ln)
	t.Cleanup(func() { b.relOnce.Do(func() { close(b.release) }); b.kill() })
	return b
}

// r25ElasticDeadBackend is a backend whose address nothing listens
// on yet (start it with restart).
func r25ElasticDeadBackend(t *testing.T, name string) *r25ElasticBackend {
	t.Helper()
	b := r25ElasticStartBackend(t, name)
	b.kill()
	return b
}

func (b *r25ElasticBackend) serve(ln net.Listener) {
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/healthz" {
			b.probes.Add(1)
			w.WriteHeader(int(b.health.Load()))
			return
		}
		b.hits.Add(1)
		w.Header().Set("X-Backend", b.name)
		if r.URL.Path == "/slow" {
			b.slow.Add(1)
			<-b.release
		}
		w.WriteHeader(int(b.status.Load()))
		_, _ = io.WriteString(w, b.name)
	})}
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.conns.Add(-1)
		}
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *r25ElasticBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

func (b *r25ElasticBackend) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart %s: %v", b.addr, err)
	}
	b.serve(ln)
}

// r25ElasticGet sends n GETs to path and returns the status codes
// seen, with a count each, and which backend answered each 200.
func r25ElasticGet(t *testing.T, c *http.Client, px *testProxy, path string, n int) (codes map[int]int, by map[string]int) {
	t.Helper()
	codes, by = map[int]int{}, map[string]int{}
	for range n {
		resp, err := c.Get("http://" + px.addr + path)
		if err != nil {
			codes[-1]++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		by[resp.Header.Get("X-Backend")]++
	}
	return codes, by
}

// r25ElasticMembers is the pool's backends in /admin/pools, by address.
func r25ElasticMembers(t *testing.T, px *testProxy) map[string]BackendStatus {
	t.Helper()
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]BackendStatus{}
	for _, p := range st {
		for _, b := range p.Backends {
			if b.Source == "leaving" {
				out["leaving "+b.Address] = b
				continue
			}
			out[b.Address] = b
		}
	}
	return out
}

// r25ElasticGauge is metric name's value for backend addr (with
// state when not ""), and whether the series exists.
func r25ElasticGauge(t *testing.T, m *metrics.Metrics, name, addr, state string) (float64, bool) {
	t.Helper()
	for k, v := range gatherCounts(t, m, name) {
		if strings.Contains(k, fmt.Sprintf("backend=%q", addr)) && (state == "" || strings.Contains(k, fmt.Sprintf("state=%q", state))) {
			return v, true
		}
	}
	return 0, false
}

// TestElasticScaleOutChecked: README "New and vanished
// backends": a new address in DNS joins as a new backend does: it takes
// traffic at once, ramping with slow_start (the first answer at full
// weight); one where nothing listens yet leaves rotation on its first
// failed probe, costing no client request (connection refused is
// retried), and comes in, ramping, once it passes healthy_threshold
// probes; sluice_backend_up and sluice_backend_state follow.
func TestElasticScaleOutChecked(t *testing.T) {
	a := r25ElasticStartBackend(t, "a")
	b := r25ElasticStartBackend(t, "b")
	c := r25ElasticDeadBackend(t, "c")
	d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
	d.set(t, a.addr)
	yml := r25ElasticYAML(d,
		"    slow_start: 8s\n    health_check: { path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }\n",
		"drain_timeout: 5s\n")
	m := metrics.New("test")
	px := startProxyWith(t, yml, m)
	r25ElasticWatch(t, px, yml)
	cl := testClient(t)

	waitFor(t, "a discovered", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)[a.addr]; return ok })
	if w := r25ElasticMembers(t, px)[a.addr].EffectiveWeight; w != 1 {
		t.Errorf("first answer's backend: effective weight %v, want 1 (full at once)", w)
	}

	d.set(t, a.addr, b.addr)
	waitFor(t, "b discovered", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)[b.addr]; return ok })
	st := r25ElasticMembers(t, px)[b.addr]
	if st.State != StateHealthy || st.EffectiveWeight <= 0 || st.EffectiveWeight >= 1 {
		t.Errorf("new backend b: state %s, effective weight %v; want healthy and ramping (0 < w < 1)", st.State, st.EffectiveWeight)
	}
	waitFor(t, "b takes traffic", 5*time.Second, func() bool {
		r25ElasticGet(t, cl, px, "/", 5)
		return b.hits.Load() > 0
	})

	d.set(t, a.addr, b.addr, c.addr)
	waitFor(t, "c discovered", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)[c.addr]; return ok })
	codes, _ := r25ElasticGet(t, cl, px, "/", 30)
	waitFor(t, "c unhealthy", 5*time.Second, func() bool { return !r25ElasticMembers(t, px)[c.addr].Healthy })
	codes2, _ := r25ElasticGet(t, cl, px, "/", 30)
	for k, v := range codes2 {
		codes[k] += v
	}
	if codes[200] != 60 {
		t.Errorf("while c is discovered but down: codes %v, want 60 x 200", codes)
	}
	if up, _ := r25ElasticGauge(t, m, "sluice_backend_up", c.addr, ""); up != 0 {
		t.Errorf("sluice_backend_up for unhealthy c = %v, want 0", up)
	}
	if v, _ := r25ElasticGauge(t, m, "sluice_backend_state", c.addr, "unhealthy"); v != 1 {
		t.Errorf("sluice_backend_state{state=unhealthy} for c = %v, want 1", v)
	}

	c.restart(t)
	waitFor(t, "c healthy", 5*time.Second, func() bool { return r25ElasticMembers(t, px)[c.addr].Healthy })
	st = r25ElasticMembers(t, px)[c.addr]
	if st.EffectiveWeight <= 0 || st.EffectiveWeight >= 1 {
		t.Errorf("c back to healthy: effective weight %v, want ramping (0 < w < 1)", st.EffectiveWeight)
	}
	waitFor(t, "c takes traffic", 5*time.Second, func() bool {
		r25ElasticGet(t, cl, px, "/", 5)
		return c.hits.Load() > 0
	})
	if up, _ := r25ElasticGauge(t, m, "sluice_backend_up", c.addr, ""); up != 1 {
		t.Errorf("sluice_backend_up for healthy c = %v, want 1", up)
	}
}

// TestElasticVanishedDrains: README "Addresses that leave the
// answer are drained: they get no new requests, and requests already in
// flight may finish"; then their connections are closed and their
// series deleted.
func TestElasticVanishedDrains(t *testing.T) {
	a := r25ElasticStartBackend(t, "a")
	b := r25ElasticStartBackend(t, "b")
	d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
	d.set(t, a.addr, b.addr)
	yml := r25ElasticYAML(d, "    health_check: { path: /healthz, interval: 100ms }\n", "drain_timeout: 8s\n")
	m := metrics.New("test")
	px := startProxyWith(t, yml, m)
	r25ElasticWatch(t, px, yml)
	cl := testClient(t)
	waitFor(t, "a and b discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 2 })

	// Park slow requests until one is on b.
	type res struct {
		code int
		by   string
		err  error
	}
	results := make(chan res, 8)
	sent := 0
	for b.slow.Load() == 0 && sent < 8 {
		sent++
		go func() {
			c := &http.Client{Timeout: 9 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + px.addr + "/slow")
			if err != nil {
				results <- res{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- res{code: resp.StatusCode, by: resp.Header.Get("X-Backend")}
		}()
		waitFor(t, "slow request parked", 5*time.Second, func() bool { return a.slow.Load()+b.slow.Load() >= int64(sent) })
	}
	if b.slow.Load() == 0 {
		t.Fatal("no slow request reached b")
	}

	d.set(t, a.addr)
	waitFor(t, "b leaving", 5*time.Second, func() bool {
		ms := r25ElasticMembers(t, px)
		_, member := ms[b.addr]
		_, leaving := ms["leaving "+b.addr]
		return !member && leaving
	})
	if v, _ := r25ElasticGauge(t, m, "sluice_backend_state", b.addr, "draining"); v != 1 {
		t.Errorf("leaving b: sluice_backend_state{state=draining} = %v, want 1", v)
	}
	if v, _ := r25ElasticGauge(t, m, "sluice_backend_up", b.addr, ""); v != 0 {
		t.Errorf("leaving b: sluice_backend_up = %v, want 0", v)
	}
	hits := b.hits.Load()
	codes, by := r25ElasticGet(t, cl, px, "/", 20)
	if codes[200] != 20 || by["b"] != 0 || b.hits.Load() != hits {
		t.Errorf("after b left: codes %v, by %v, b's hits %d -> %d; want 20 x 200, none on b", codes, by, hits, b.hits.Load())
	}

	b.relOnce.Do(func() { close(b.release) })
	a.relOnce.Do(func() { close(a.release) })
	for range sent {
		select {
		case r := <-results:
			if r.err != nil || r.code != 200 {
				t.Errorf("slow request in flight: code %d from %q, err %v; want 200", r.code, r.by, r.err)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("slow request never answered")
		}
	}
	waitFor(t, "b freed", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)["leaving "+b.addr]; return !ok })
	waitFor(t, "b's connections closed", 5*time.Second, func() bool { return b.conns.Load() == 0 })
	waitFor(t, "b's series gone", 5*time.Second, func() bool {
		_, ok := r25ElasticGauge(t, m, "sluice_backend_up", b.addr, "")
		return !ok
	})
}

// TestElasticDNSFailureKeepsSet: README "When DNS fails":
// SERVFAIL, NXDOMAIN, an empty answer, REFUSED, a server that does not
// answer, keep the last good set; the next good answer applies.
func TestElasticDNSFailureKeepsSet(t *testing.T) {
	for _, mode := range []string{"servfail", "nxdomain", "empty", "refused", "silent"} {
		t.Run(mode, func(t *testing.T) {
			a := r25ElasticStartBackend(t, "a")
			b := r25ElasticStartBackend(t, "b")
			c := r25ElasticStartBackend(t, "c")
			d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
			d.set(t, a.addr, b.addr)
			yml := r25ElasticYAML(d, "", "")
			px := startProxy(t, yml)
			r25ElasticWatch(t, px, yml)
			cl := testClient(t)
			waitFor(t, "a and b discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 2 })

			if mode == "empty" {
				d.set(t)
			} else {
				d.setMode(mode)
			}
			q := d.queries.Load()
			waitFor(t, "more lookups", 8*time.Second, func() bool { return d.queries.Load() >= q+6 })
			ms := r25ElasticMembers(t, px)
			if len(ms) != 2 || ms[a.addr].State != StateHealthy || ms[b.addr].State != StateHealthy {
				t.Errorf("during the DNS failure: members %v, want a and b healthy", ms)
			}
			codes, by := r25ElasticGet(t, cl, px, "/", 10)
			if codes[200] != 10 || by["a"] != 5 || by["b"] != 5 {
				t.Errorf("during the DNS failure: codes %v, by %v; want 10 x 200, 5 each", codes, by)
			}

			d.set(t, a.addr, c.addr)
			d.setMode("")
			waitFor(t, "recovered set", 8*time.Second, func() bool {
				ms := r25ElasticMembers(t, px)
				_, hasB := ms[b.addr]
				_, hasC := ms[c.addr]
				return hasC && !hasB
			})
		})
	}
}

// TestElasticCrashEjectReturn: a backend that crashes (listener
// and connections closed) is taken out by passive and active checks
// with no client request failing (connection refused is retried), and
// comes back when it listens again; sluice_backend_up, _state and
// sluice_outlier_ejections_total agree with /admin/pools.
func TestElasticCrashEjectReturn(t *testing.T) {
	for _, tc := range []struct{ name, pool string }{
		{"passive", "    outlier_detection: { consecutive_failures: 3, base_ejection_time: 500ms, max_ejection_percent: 50 }\n"},
		{"active", "    health_check: { path: /healthz, interval: 100ms, timeout: 300ms, healthy_threshold: 2, unhealthy_threshold: 2 }\n"},
		{"both", "    outlier_detection: { consecutive_failures: 3, base_ejection_time: 500ms, max_ejection_percent: 50 }\n" +
			"    health_check: { path: /healthz, interval: 100ms, timeout: 300ms, healthy_threshold: 2, unhealthy_threshold: 2 }\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := r25ElasticStartBackend(t, "a")
			b := r25ElasticStartBackend(t, "b")
			d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
			d.set(t, a.addr, b.addr)
			yml := r25ElasticYAML(d, tc.pool, "")
			m := metrics.New("test")
			px := startProxyWith(t, yml, m)
			r25ElasticWatch(t, px, yml)
			cl := testClient(t)
			waitFor(t, "a and b discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 2 })

			b.kill()
			codes := map[int]int{}
			waitFor(t, "b out of rotation", 5*time.Second, func() bool {
				cs, _ := r25ElasticGet(t, cl, px, "/", 4)
				for k, v := range cs {
					codes[k] += v
				}
				return r25ElasticMembers(t, px)[b.addr].State != StateHealthy
			})
			if len(codes) != 1 || codes[200] == 0 {
				t.Errorf("while b crashed: codes %v, want only 200", codes)
			}
			st := r25ElasticMembers(t, px)[b.addr]
			if v, _ := r25ElasticGauge(t, m, "sluice_backend_state", b.addr, st.State); v != 1 {
				t.Errorf("b %s in /admin/pools but sluice_backend_state{state=%q} = %v", st.State, st.State, v)
			}
			if v, _ := r25ElasticGauge(t, m, "sluice_backend_up", b.addr, ""); v != 0 {
				t.Errorf("b out: sluice_backend_up = %v, want 0", v)
			}
			ej, _ := r25ElasticGauge(t, m, "sluice_outlier_ejections_total", b.addr, "")
			if (st.State == StateEjected) != (ej == 1) {
				t.Errorf("b %s, sluice_outlier_ejections_total = %v", st.State, ej)
			}

			b.restart(t)
			waitFor(t, "b back", 8*time.Second, func() bool {
				r25ElasticGet(t, cl, px, "/", 2)
				return r25ElasticMembers(t, px)[b.addr].State == StateHealthy
			})
			hits := b.hits.Load()
			codes, by := r25ElasticGet(t, cl, px, "/", 20)
			if codes[200] != 20 || by["b"] == 0 || b.hits.Load() == hits {
				t.Errorf("b back: codes %v, by %v, want 20 x 200 and some on b", codes, by)
			}
			if v, _ := r25ElasticGauge(t, m, "sluice_backend_up", b.addr, ""); v != 1 {
				t.Errorf("b back: sluice_backend_up = %v, want 1", v)
			}
			if v, _ := r25ElasticGauge(t, m, "sluice_backend_state", b.addr, "healthy"); v != 1 {
				t.Errorf("b back: sluice_backend_state{state=healthy} = %v, want 1", v)
			}
		})
	}
}

// r25ElasticCount is how many members of the pool are in state.
func r25ElasticCount(ms map[string]BackendStatus, state string) int {
	n := 0
	for k, b := range ms {
		if !strings.HasPrefix(k, "leaving ") && b.State == state {
			n++
		}
	}
	return n
}

// TestElasticMostFailAtOnce: three of four discovered backends
// crash at once. README: max_ejection_percent 50 ejects at most two
// (the third keeps getting traffic, its failures retried on the live
// one); sluice_outlier_ejections_total counts those two only. With
// panic_threshold 75%, two ejected of four puts the pool in panic mode
// (sluice_pool_panic_mode 1, panic_mode in /admin/pools), which
// balances over all four, and ejects no third. Once the crashed ones
// listen again and their ejections end, every backend takes traffic
// and panic mode ends.
func TestElasticMostFailAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		panic string
	}{{"no panic threshold", ""}, {"panic 75%", "    panic_threshold: 75%\n"}} {
		t.Run(tc.name, func(t *testing.T) {
			var bs []*r25ElasticBackend
			var addrs []string
			for i := range 4 {
				b := r25ElasticStartBackend(t, fmt.Sprint("b", i))
				bs = append(bs, b)
				addrs = append(addrs, b.addr)
			}
			d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
			d.set(t, addrs...)
			yml := r25ElasticYAML(d, "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1500ms, max_ejection_percent: 50 }\n"+tc.panic,
				"retries: { attempts: 4 }\n")
			m := metrics.New("test")
			px := startProxyWith(t, yml, m)
			r25ElasticWatch(t, px, yml)
			cl := testClient(t)
			waitFor(t, "all discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 4 })

			for _, b := range bs[1:] {
				b.kill()
			}
			codes := map[int]int{}
			for range 4 {
				cs, _ := r25ElasticGet(t, cl, px, "/", 20)
				for k, v := range cs {
					codes[k] += v
				}
			}
			ms := r25ElasticMembers(t, px)
			if n := r25ElasticCount(ms, StateEjected); n != 2 {
				t.Errorf("ejected %d of 4 with 3 crashed, want 2 (max_ejection_percent 50): %v", n, ms)
			}
			if ms[bs[0].addr].State != StateHealthy {
				t.Errorf("live backend: %+v, want healthy", ms[bs[0].addr])
			}
			total := 0.0
			for _, b := range bs {
				v, _ := r25ElasticGauge(t, m, "sluice_outlier_ejections_total", b.addr, "")
				total += v
				st := ms[b.addr].State
				if g, _ := r25ElasticGauge(t, m, "sluice_backend_state", b.addr, st); g != 1 {
					t.Errorf("%s: %s in /admin/pools, sluice_backend_state{state=%q} = %v", b.name, st, st, g)
				}
			}
			if total != 2 {
				t.Errorf("sluice_outlier_ejections_total summed = %v, want 2", total)
			}
			wantPanic := tc.panic != ""
			st, err := px.ctrl.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st[0].Panic != wantPanic {
				t.Errorf("panic_mode = %v, want %v", st[0].Panic, wantPanic)
			}
			if g := gatherCounts(t, m, "sluice_pool_panic_mode")[`pool="p"`]; (g == 1) != wantPanic {
				t.Errorf("sluice_pool_panic_mode = %v, want panic %v", g, wantPanic)
			}
			if !wantPanic && (len(codes) != 1 || codes[200] != 80) {
				t.Errorf("codes %v, want 80 x 200 (refused connections retried)", codes)
			}
			t.Logf("codes while three were down: %v", codes)

			for _, b := range bs[1:] {
				b.restart(t)
			}
			waitFor(t, "all healthy again", 8*time.Second, func() bool {
				r25ElasticGet(t, cl, px, "/", 4)
				return r25ElasticCount(r25ElasticMembers(t, px), StateHealthy) == 4
			})
			before := make([]int64, 4)
			for i, b := range bs {
				before[i] = b.hits.Load()
			}
			cs, _ := r25ElasticGet(t, cl, px, "/", 80)
			if cs[200] != 80 {
				t.Errorf("all back: codes %v, want 80 x 200", cs)
			}
			for i, b := range bs {
				if b.hits.Load() == before[i] {
					t.Errorf("all back: %s got none of 80 requests", b.name)
				}
			}
			if g := gatherCounts(t, m, "sluice_pool_panic_mode")[`pool="p"`]; g != 0 {
				t.Errorf("all back: sluice_pool_panic_mode = %v, want 0", g)
			}
		})
	}
}

// TestElasticReloadKeepsState: README "Hot reload": backends
// keep their identity across reloads, "their health, ejection,
// in-flight and EWMA counters ... carry over". A discovered backend
// unhealthy by its probes, one ejected, and one ramping under
// slow_start stay so across a reload that adds a route, and across one
// that changes upstream timeouts (new clients); the metrics agree.
func TestElasticReloadKeepsState(t *testing.T) {
	a := r25ElasticStartBackend(t, "a")
	sick := r25ElasticStartBackend(t, "sick")
	bad := r25ElasticStartBackend(t, "bad")
	late := r25ElasticStartBackend(t, "late")
	d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
	d.set(t, a.addr, sick.addr, bad.addr)
	pool := "    slow_start: 20s\n" +
		"    health_check: { path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }\n" +
		"    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50 }\n"
	yml := r25ElasticYAML(d, pool, "")
	m := metrics.New("test")
	px := startProxyWith(t, yml, m)
	stopWatch := r25ElasticWatch(t, px, yml)
	cl := testClient(t)
	waitFor(t, "discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 3 })

	sick.health.Store(503)
	bad.status.Store(500)
	waitFor(t, "sick unhealthy, bad ejected", 5*time.Second, func() bool {
		r25ElasticGet(t, cl, px, "/", 3)
		ms := r25ElasticMembers(t, px)
		return ms[sick.addr].State == StateUnhealthy && ms[bad.addr].State == StateEjected
	})
	d.set(t, a.addr, sick.addr, bad.addr, late.addr)
	waitFor(t, "late discovered", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)[late.addr]; return ok })
	before := r25ElasticMembers(t, px)
	ejBefore, _ := r25ElasticGauge(t, m, "sluice_outlier_ejections_total", bad.addr, "")

	check := func(step string) {
		t.Helper()
		ms := r25ElasticMembers(t, px)
		if ms[sick.addr].State != StateUnhealthy {
			t.Errorf("%s: sick %+v, want unhealthy still", step, ms[sick.addr])
		}
		if ms[bad.addr].State != StateEjected || ms[bad.addr].EjectedUntil == nil || !ms[bad.addr].EjectedUntil.Equal(*before[bad.addr].EjectedUntil) {
			t.Errorf("%s: bad %+v, want ejected until %v still", step, ms[bad.addr], before[bad.addr].EjectedUntil)
		}
		if w := ms[late.addr].EffectiveWeight; w < before[late.addr].EffectiveWeight || w >= 1 {
			t.Errorf("%s: late's effective weight %v, was %v: want its ramp to go on", step, w, before[late.addr].EffectiveWeight)
		}
		if w := ms[a.addr].EffectiveWeight; w != 1 {
			t.Errorf("%s: a's effective weight %v, want 1", step, w)
		}
		for _, b := range []*r25ElasticBackend{a, sick, bad, late} {
			st := ms[b.addr].State
			if g, _ := r25ElasticGauge(t, m, "sluice_backend_state", b.addr, st); g != 1 {
				t.Errorf("%s: %s %s in /admin/pools, sluice_backend_state{state=%q} = %v", step, b.name, st, st, g)
			}
			up, _ := r25ElasticGauge(t, m, "sluice_backend_up", b.addr, "")
			if (up == 1) != (ms[b.addr].EffectiveWeight > 0) {
				t.Errorf("%s: %s sluice_backend_up = %v, effective weight %v", step, b.name, up, ms[b.addr].EffectiveWeight)
			}
		}
		if ej, _ := r25ElasticGauge(t, m, "sluice_outlier_ejections_total", bad.addr, ""); ej != ejBefore {
			t.Errorf("%s: sluice_outlier_ejections_total for bad = %v, want %v", step, ej, ejBefore)
		}
		hits := sick.hits.Load() + bad.hits.Load()
		cs, _ := r25ElasticGet(t, cl, px, "/", 20)
		if cs[200] != 20 || sick.hits.Load()+bad.hits.Load() != hits {
			t.Errorf("%s: codes %v, sick and bad got %d requests; want 20 x 200, none on them", step, cs, sick.hits.Load()+bad.hits.Load()-hits)
		}
	}
	for i, top := range []string{
		"",
		"timeouts: { connect: 2s, response: 20s }\n",
	} {
		y := strings.Replace(r25ElasticYAML(d, pool, top), "routes: [{ pool: p }]", fmt.Sprintf("routes: [{ pool: p }, { match: { path_prefix: /r%d }, pool: p }]", i), 1)
		if err := px.ctrl.Apply(context.Background(), mustParse(t, y)); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("reload %d", i))
	}
	// A reload that changes only the lookup's interval restarts the
	// watcher (as cmd/sluice does), whose first answer is the same set.
	y := strings.Replace(r25ElasticYAML(d, pool, ""), "interval: 100ms, resolver", "interval: 150ms, resolver", 1)
	if err := px.ctrl.Apply(context.Background(), mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	stopWatch()
	q := d.queries.Load()
	r25ElasticWatch(t, px, y)
	waitFor(t, "the new watcher's lookups", 5*time.Second, func() bool { return d.queries.Load() >= q+6 })
	check("interval reload")
	// A few more probes under the reloaded config: still unhealthy.
	p := sick.probes.Load()
	waitFor(t, "more probes of sick", 5*time.Second, func() bool { return sick.probes.Load() >= p+3 })
	check("after probes")
}

// TestElasticChaosMetricsAgree: backends crash and come back,
// fail their probes, leave and rejoin the DNS answer, under load and
// reloads (new clients, new routes). Once the answer settles on a and b,
// both live: /admin/pools lists exactly them, healthy at full weight,
// nothing leaving; the backend series are theirs only, and say the same
// (up 1, weight 1, state healthy); a, in every answer all along, has
// sluice_outlier_ejections_total equal to its "backend ejected" lines;
// every client request got an answer.
func TestElasticChaosMetricsAgree(t *testing.T) {
	var bs []*r25ElasticBackend
	for i := range 4 {
		bs = append(bs, r25ElasticStartBackend(t, fmt.Sprint("b", i)))
	}
	a, b := bs[0], bs[1]
	d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
	d.set(t, a.addr, b.addr)
	pool := "    slow_start: 400ms\n    panic_threshold: 30%\n" +
		"    health_check: { path: /healthz, interval: 50ms, timeout: 300ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n" +
		"    outlier_detection: { consecutive_failures: 2, base_ejection_time: 200ms, max_ejection_percent: 50 }\n"
	top := func(i int) string {
		return fmt.Sprintf("drain_timeout: 1s\ntimeouts: { response: %ds }\nretries: { attempts: 3 }\n", 5+i%2)
	}
	yml := r25ElasticYAML(d, pool, top(0))
	m := metrics.New("test")
	var logBuf syncBuffer
	px := startProxyLogged(t, yml, m, nil, zerolog.New(&logBuf))
	r25ElasticWatch(t, px, yml)
	waitFor(t, "discovered", 5*time.Second, func() bool { return len(r25ElasticMembers(t, px)) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var answered, failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := testClient(t)
			for ctx.Err() == nil {
				resp, err := cl.Get("http://" + px.addr + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
			}
		}()
	}
	step := 0
	dead := map[int]bool{}
	for ctx.Err() == nil {
		step++
		i := step % 4
		switch step % 5 {
		case 0: // crash or restart one
			if dead[i] {
				bs[i].restart(t)
			} else {
				bs[i].kill()
			}
			dead[i] = !dead[i]
		case 1: // probes fail or pass
			if bs[i].health.Load() == 200 {
				bs[i].health.Store(503)
			} else {
				bs[i].health.Store(200)
			}
		case 2, 3: // another answer: a always, the others by turns
			addrs := []string{a.addr}
			for j := 1; j < 4; j++ {
				if (step+j)%3 != 0 {
					addrs = append(addrs, bs[j].addr)
				}
			}
			d.set(t, addrs...)
		case 4:
			y := strings.Replace(r25ElasticYAML(d, pool, top(step)), "routes: [{ pool: p }]",
				fmt.Sprintf("routes: [{ pool: p }, { match: { path_prefix: /r%d }, pool: p }]", step%3), 1)
			if err := px.ctrl.Apply(context.Background(), mustParse(t, y)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(60 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d steps, %d answered, %d failed", step, answered.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d client requests got no answer", failed.Load())
	}

	for i, bk := range bs {
		if dead[i] {
			bk.restart(t)
		}
		bk.health.Store(200)
	}
	d.set(t, a.addr, b.addr)
	cl := testClient(t)
	waitFor(t, "settled on a and b", 8*time.Second, func() bool {
		r25ElasticGet(t, cl, px, "/", 2)
		ms := r25ElasticMembers(t, px)
		return len(ms) == 2 && ms[a.addr].State == StateHealthy && ms[b.addr].State == StateHealthy &&
			ms[a.addr].EffectiveWeight == 1 && ms[b.addr].EffectiveWeight == 1
	})
	waitFor(t, "others' series gone", 5*time.Second, func() bool {
		for _, bk := range bs[2:] {
			if _, ok := r25ElasticGauge(t, m, "sluice_backend_up", bk.addr, ""); ok {
				return false
			}
		}
		return true
	})
	for _, name := range []string{"sluice_backend_up", "sluice_backend_weight", "sluice_backend_state", "sluice_outlier_ejections_total", "sluice_health_checks_total", "sluice_upstream_connections"} {
		for k := range gatherCounts(t, m, name) {
			if !strings.Contains(k, a.addr) && !strings.Contains(k, b.addr) {
				t.Errorf("%s{%s}: a series of a backend no longer in the pool", name, k)
			}
		}
	}
	for _, bk := range []*r25ElasticBackend{a, b} {
		for name, want := range map[string]float64{"sluice_backend_up": 1, "sluice_backend_weight": 1} {
			if v, _ := r25ElasticGauge(t, m, name, bk.addr, ""); v != want {
				t.Errorf("%s %s = %v, want %v", bk.name, name, v, want)
			}
		}
		if v, _ := r25ElasticGauge(t, m, "sluice_backend_state", bk.addr, "healthy"); v != 1 {
			t.Errorf("%s sluice_backend_state{healthy} = %v, want 1", bk.name, v)
		}
	}
	lines := 0
	for _, l := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(l, `"backend ejected"`) && strings.Contains(l, `"backend":"`+a.addr+`"`) {
			lines++
		}
	}
	if v, _ := r25ElasticGauge(t, m, "sluice_outlier_ejections_total", a.addr, ""); v != float64(lines) {
		t.Errorf("a: sluice_outlier_ejections_total = %v, %d \"backend ejected\" lines", v, lines)
	}
	if g := gatherCounts(t, m, "sluice_pool_panic_mode")[`pool="p"`]; g != 0 {
		t.Errorf("settled: sluice_pool_panic_mode = %v, want 0", g)
	}
}

// TestElasticFirstLookupFails: README "When DNS fails": if the
// first lookup fails, the pool has no backends; its requests get 503
// with Retry-After: 1 (counted in sluice_no_backend_total) until a
// lookup succeeds, whose backends take full weight at once (the first
// answer of the pool's lookup), slow_start or not.
func TestElasticFirstLookupFails(t *testing.T) {
	a := r25ElasticStartBackend(t, "a")
	d := r25ElasticStartDNS(t, "_http._tcp.api.test.")
	d.set(t, a.addr)
	d.setMode("servfail")
	yml := r25ElasticYAML(d, "    slow_start: 20s\n", "")
	m := metrics.New("test")
	px := startProxyWith(t, yml, m)
	r25ElasticWatch(t, px, yml)
	q := d.queries.Load()
	waitFor(t, "failed lookups", 5*time.Second, func() bool { return d.queries.Load() >= q+2 })
	resp, err := testClient(t).Get("http://" + px.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("before any answer: %d, Retry-After %q; want 503, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if v := gatherCounts(t, m, "sluice_no_backend_total")[`pool="p"`]; v != 1 {
		t.Errorf("sluice_no_backend_total = %v, want 1", v)
	}
	d.setMode("")
	waitFor(t, "a discovered", 5*time.Second, func() bool { _, ok := r25ElasticMembers(t, px)[a.addr]; return ok })
	if w := r25ElasticMembers(t, px)[a.addr].EffectiveWeight; w != 1 {
		t.Errorf("first answer after failed lookups: effective weight %v, want 1", w)
	}
	codes, _ := r25ElasticGet(t, testClient(t), px, "/", 5)
	if codes[200] != 5 {
		t.Errorf("after the first answer: codes %v, want 5 x 200", codes)
	}
}
