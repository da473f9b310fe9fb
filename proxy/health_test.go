package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// modalBackend is a real HTTP backend whose behaviour a test switches at
// run time, and which can be killed and restarted on the same address.
type modalBackend struct {
	addr    string
	name    string
	traffic atomic.Int64 // non-health requests
	probes  atomic.Int64
	// healthStatus and trafficStatus are the codes answered on /healthz
	// and everything else.
	healthStatus  atomic.Int32
	trafficStatus atomic.Int32
	mu            sync.Mutex
	srv           *http.Server
}

func newModalBackend(t *testing.T, name string) *modalBackend {
	t.Helper()
	b := &modalBackend{name: name}
	b.healthStatus.Store(200)
	b.trafficStatus.Store(200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.kill)
	return b
}

func (b *modalBackend) serve(ln net.Listener) {
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.probes.Add(1)
			w.WriteHeader(int(b.healthStatus.Load()))
			return
		}
		b.traffic.Add(1)
		w.Header().Set("X-Backend", b.name)
		w.WriteHeader(int(b.trafficStatus.Load()))
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// kill stops the backend abruptly: listener and connections closed.
func (b *modalBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

// restart listens again on the same address.
func (b *modalBackend) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
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

func modalYAML(backends []*modalBackend, extra string) string {
	y := "routes: [{ pool: p }]\npools:\n  p:\n    algorithm: round_robin\n" + extra + "    backends:\n"
	for _, b := range backends {
		y += fmt.Sprintf("      - { address: %s, weight: 10 }\n", b.addr)
	}
	return y
}

// stateOf returns the admin state of a backend.
func stateOf(t *testing.T, px *testProxy, addr string) BackendStatus {
	t.Helper()
	b, ok := findStatus(t, px, addr)
	if !ok {
		t.Fatalf("backend %s not in status", addr)
	}
	return b
}

// findStatus returns the admin state of a backend, if Status lists it.
func findStatus(t *testing.T, px *testProxy, addr string) (BackendStatus, bool) {
	t.Helper()
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		for _, b := range p.Backends {
			if b.Address == addr {
				return b, true
			}
		}
	}
	return BackendStatus{}, false
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
	return 0
}

// load sends sequential GETs until stop is closed, counting outcomes.
type load struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func startLoad(t *testing.T, url string, workers int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	c := testClient(t)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					l.failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					l.ok.Add(1)
				} else {
					l.failed.Add(1)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(l.done) }()
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

const fastChecks = "    health_check: { path: /healthz, interval: 100ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2 }\n"

func TestHealthKillAndReturn(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b"), newModalBackend(t, "c")}
	px := startProxy(t, modalYAML(bs, fastChecks+"    slow_start: 1s\n"))
	l := startLoad(t, "http://"+px.addr+"/", 4)
	time.Sleep(200 * time.Millisecond)

	victim := bs[2]
	victim.kill()
	// Detection bound: interval × unhealthy_threshold + one interval, plus
	// slack for a loaded 2-core machine.
	took := waitFor(t, "victim unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, victim.addr).Healthy })
	t.Logf("killed backend marked unhealthy after %v", took)
	if failed := l.failed.Load(); failed != 0 {
		t.Errorf("%d requests failed while the backend died, want 0 (connect errors are retried)", failed)
	}

	victim.restart(t)
	before := victim.traffic.Load()
	waitFor(t, "victim healthy again", 2*time.Second, func() bool { return stateOf(t, px, victim.addr).Healthy })
	st := stateOf(t, px, victim.addr)
	if st.EffectiveWeight >= float64(st.Weight) {
		t.Errorf("effective weight right after recovery = %v, want below %d (slow start)", st.EffectiveWeight, st.Weight)
	}
	waitFor(t, "traffic back on victim", 2*time.Second, func() bool { return victim.traffic.Load() > before+10 })
	waitFor(t, "slow start over", 3*time.Second, func() bool {
		s := stateOf(t, px, victim.addr)
		return s.EffectiveWeight == float64(s.Weight)
	})
	l.end()
	t.Logf("load: %d ok, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed, want 0", l.failed.Load())
	}
}

func TestHealthActiveCheckFailsBackend(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, fastChecks))
	bs[1].healthStatus.Store(503) // /healthz says no, traffic still 200
	waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
	before := bs[1].traffic.Load()
	c := testClient(t)
	for range 50 {
		if code, from, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 || from != "a" {
			t.Fatalf("GET = %d from %q, want 200 from a", code, from)
		}
	}
	if got := bs[1].traffic.Load() - before; got != 0 {
		t.Errorf("unhealthy backend got %d requests, want 0", got)
	}
	if r := stateOf(t, px, bs[1].addr).HealthReason; r != "status 503" {
		t.Errorf("health reason = %q, want status 503", r)
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, fastChecks+
		"    outlier_detection: { consecutive_failures: 3, base_ejection_time: 500ms, max_ejection_percent: 50 }\n"))
	bs[1].trafficStatus.Store(500) // real traffic fails, /healthz is fine
	c := testClient(t)
	for range 20 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	waitFor(t, "b ejected", time.Second, func() bool { return stateOf(t, px, bs[1].addr).State == StateEjected })
	if !stateOf(t, px, bs[1].addr).Healthy {
		t.Error("ejected backend reported unhealthy by active checks, want healthy (only passive failed)")
	}
	before := bs[1].traffic.Load()
	for range 30 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if got := bs[1].traffic.Load() - before; got != 0 {
		t.Errorf("ejected backend got %d requests, want 0", got)
	}
	bs[1].trafficStatus.Store(200)
	waitFor(t, "b back after ejection time", 2*time.Second, func() bool { return stateOf(t, px, bs[1].addr).State == StateHealthy })
	waitFor(t, "traffic back on b", 2*time.Second, func() bool {
		get(t, c, "http://"+px.addr+"/", nil)
		return bs[1].traffic.Load() > before
	})
}

func TestOutlierBlackHole(t *testing.T) {
	good := newModalBackend(t, "good")
	// A black hole: accepts connections, never answers.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stopHole := make(chan struct{})
	go func() {
		for {
			conn, err := hole.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); <-stopHole; conn.Close() }()
		}
	}()
	t.Cleanup(func() { hole.Close(); close(stopHole); conns.Wait() })

	yml := fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50 }
    backends: [{ address: %s }, { address: %s }]
timeouts: { response: 200ms }
`, good.addr, hole.Addr())
	px := startProxy(t, yml)
	c := testClient(t)
	for range 6 {
		get(t, c, "http://"+px.addr+"/", nil) // some of these time out (504)
	}
	waitFor(t, "black hole ejected", time.Second, func() bool { return stateOf(t, px, hole.Addr().String()).State == StateEjected })
	for range 40 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("GET after ejection = %d, want 200", code)
		}
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	var bs []*modalBackend
	for i := range 4 {
		bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
	}
	for _, b := range bs[1:] {
		b.trafficStatus.Store(500)
	}
	px := startProxy(t, modalYAML(bs, "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50 }\n"))
	c := testClient(t)
	for range 60 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	time.Sleep(200 * time.Millisecond)
	ejected := 0
	for _, b := range bs {
		if stateOf(t, px, b.addr).State == StateEjected {
			ejected++
		}
	}
	if ejected != 2 {
		t.Errorf("ejected = %d of 4 with 3 failing, want 2 (max_ejection_percent 50)", ejected)
	}
}

func TestNoHealthyBackendAndPanicMode(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		wantCode  int
		wantPanic float64 // sluice_pool_panic_mode
	}{
		{"no panic: 503 with Retry-After", "", 503, 0},
		{"panic mode: balance over all", "    panic_threshold: 50%\n", 200, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
			for _, b := range bs {
				b.healthStatus.Store(500)
			}
			m := metrics.New("test")
			px := startProxyWith(t, modalYAML(bs, fastChecks+tt.extra), m)
			waitFor(t, "both unhealthy", 2*time.Second, func() bool {
				return !stateOf(t, px, bs[0].addr).Healthy && !stateOf(t, px, bs[1].addr).Healthy
			})
			resp, err := testClient(t).Get("http://" + px.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if got := gatherCounts(t, m, "sluice_pool_panic_mode")[`pool="p"`]; got != tt.wantPanic {
				t.Errorf("sluice_pool_panic_mode = %v, want %v", got, tt.wantPanic)
			}
		})
	}
}
