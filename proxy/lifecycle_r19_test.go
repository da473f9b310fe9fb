package proxy

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"sluice/config"
	"sluice/metrics"
)

// TestEjectionBackoffEndToEnd: README (Passive checks):
// base_ejection_time "doubles each time the same backend is ejected
// again", capped at max_ejection_time. A backend that keeps failing is
// ejected for 300ms, 600ms, then 1.2s twice, each time it comes back.
func TestEjectionBackoffEndToEnd(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	od := "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 300ms, max_ejection_time: 1200ms, max_ejection_percent: 50 }\n"
	px := startProxy(t, modalYAML(bs, od))
	bs[1].trafficStatus.Store(500)
	c := testClient(t)
	url := "http://" + px.addr + "/"
	want := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond, 1200 * time.Millisecond}
	for i, w := range want {
		var st BackendStatus
		deadline := time.Now().Add(3 * time.Second)
		for {
			get(t, c, url, nil)
			st = stateOf(t, px, bs[1].addr)
			if st.Ejected {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ejection %d: b never ejected", i+1)
			}
		}
		// Seen right after it began: at most w left, and more than half
		// of it unless this machine stalled for w/2 (an undoubled second
		// ejection would have 300ms, an uncapped fourth 2.4s).
		left := time.Until(*st.EjectedUntil)
		if left > w || (i > 0 && left <= w/2) {
			t.Errorf("ejection %d: %v left right after it began, want about %v", i+1, left, w)
		}
		waitFor(t, "b back", w+time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Ejected })
	}
}

// TestDiscoveredDownBackendReaddedFailsFast: a DNS backend that
// is down leaves the answer and comes back while still down: as a new
// backend its first failed probe takes it out at once (README: "their
// first probe failing takes them out immediately"), and once it listens
// again it is healthy and takes requests again.
func TestDiscoveredDownBackendReaddedFailsFast(t *testing.T) {
	a := newModalBackend(t, "a")
	b := newModalBackend(t, "b")
	dns := config.DNSDiscovery{Name: "svc.test", Port: 80, Type: "A", Interval: 10 * time.Second}
	px := startProxy(t, "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n"+
		"    health_check: { path: /healthz, interval: 300ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 5 }\n"+
		"    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n")
	set := discoverer(t, px, dns)
	set(a.addr, b.addr)
	b.kill()
	waitFor(t, "b unhealthy", 5*time.Second, func() bool { return !stateOf(t, px, b.addr).Healthy })
	set(a.addr)
	set(a.addr, b.addr)
	if !stateOf(t, px, b.addr).Healthy {
		t.Fatal("re-added backend not healthy at once (new backends start healthy)")
	}
	// One probe (first delay at most 30ms, timeout 100ms), not five.
	took := waitFor(t, "re-added b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, b.addr).Healthy })
	if took > 900*time.Millisecond {
		t.Errorf("re-added dead backend taken out after %v, want after its first probe", took)
	}
	b.restart(t)
	waitFor(t, "b healthy", 3*time.Second, func() bool { return stateOf(t, px, b.addr).Healthy })
	c := testClient(t)
	before := b.traffic.Load()
	for range 10 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("GET = %d, want 200", code)
		}
	}
	if b.traffic.Load() == before {
		t.Error("b took no request after it came back")
	}
}

// TestReaddedWhileDrainingKeepsSeries: a DNS backend leaves with
// a slow request in flight and comes back before it ends: the request
// finishes with 200, the leaving row goes once it ends, the backend is a
// member again with its metric series (not forgotten by the old drain's
// end), and takes new requests.
func TestReaddedWhileDrainingKeepsSeries(t *testing.T) {
	started := make(chan struct{}, 1)
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			time.Sleep(600 * time.Millisecond)
		}
		w.Write([]byte("done-b"))
	})
	m := metrics.New("test")
	dns := config.DNSDiscovery{Name: "svc.test", Port: 80, Type: "A", Interval: 10 * time.Second}
	px := startProxyWith(t, "drain_timeout: 5s\nroutes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n"+
		"    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n", m)
	set := discoverer(t, px, dns)
	set(b.addr())
	c := testClient(t)
	res := make(chan string, 1)
	go func() {
		code, _, body := get(t, c, "http://"+px.addr+"/slow", nil)
		res <- fmt.Sprint(code, " ", body)
	}()
	<-started
	set(a.addr())
	set(a.addr(), b.addr())
	if got := <-res; got != "200 done-b" {
		t.Errorf("request in flight across leave and return = %q, want 200 done-b", got)
	}
	waitFor(t, "leaving row gone", 3*time.Second, func() bool {
		for _, s := range leavingOf(t, px, b.addr()) {
			if s.Source == "leaving" {
				return false
			}
		}
		return true
	})
	time.Sleep(200 * time.Millisecond)
	if st := stateOf(t, px, b.addr()); st.State != StateHealthy || st.Source != "dns" {
		t.Errorf("b after its old drain ended: %+v, want a healthy dns member", st)
	}
	if up, ok := gatherCounts(t, m, "sluice_backend_up")[`pool="p",backend="`+b.addr()+`"`]; !ok || up != 1 {
		t.Errorf("sluice_backend_up of the returned backend = %v (present %v) after the old drain ended, want 1", up, ok)
	}
	before := b.hits.Load()
	for range 6 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if b.hits.Load() == before {
		t.Error("returned backend took no new request")
	}
}

// discoverer returns a func that makes addrs, weight 1 each, pool p's
// backends found by dns, as a lookup would.
func discoverer(t *testing.T, px *testProxy, dns config.DNSDiscovery) func(addrs ...string) {
	return func(addrs ...string) {
		t.Helper()
		var ds []DiscoveredBackend
		for _, s := range addrs {
			ds = append(ds, DiscoveredBackend{Address: s, Weight: 1})
		}
		if err := px.ctrl.SetDiscovered(context.Background(), "p", dns, ds); err != nil {
			t.Fatal(err)
		}
	}
}
