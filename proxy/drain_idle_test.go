package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

// TestDrainCornerDrainDiscoveredBackend: an admin drain of a DNS-discovered
// backend stays across lookups that keep it (weight change included) and
// goes when a lookup drops it.
func TestDrainCornerDrainDiscoveredBackend(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	dns := config.DNSDiscovery{Name: "svc.test", Port: 80, Type: "A", Interval: 10 * time.Second}
	px := startProxy(t, "routes: [{pool: p}]\npools:\n  p:\n    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n")
	ctx := context.Background()
	set := func(wa int, addrs ...string) {
		var ds []DiscoveredBackend
		for _, s := range addrs {
			w := 1
			if s == a.addr() {
				w = wa
			}
			ds = append(ds, DiscoveredBackend{Address: s, Weight: w})
		}
		if err := px.ctrl.SetDiscovered(ctx, "p", dns, ds); err != nil {
			t.Fatal(err)
		}
	}
	set(1, a.addr(), b.addr())
	if err := px.ctrl.SetDrain(ctx, "p", a.addr(), true); err != nil {
		t.Fatal(err)
	}
	set(1, a.addr(), b.addr())
	set(5, a.addr(), b.addr())
	st := stateOf(t, px, a.addr())
	if !st.AdminDrained || st.Source != "dns" {
		t.Errorf("after lookups: %+v, want drained dns backend", st)
	}
	c := testClient(t)
	for i := 0; i < 6; i++ {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if a.hits.Load() != 0 {
		t.Errorf("drained discovered backend got %d", a.hits.Load())
	}
}

// TestDrainCornerAdminDrainClosesIdleConns: a backend drained through the
// admin API has its idle connections closed (README "### Draining").
// Found by review: an admin drain never entered the controller's drain
// list (SetDrain only set member.adminDrain), so its pooled idle
// connections stayed open until the
// ordinary idle sweep (timeouts.upstream_idle, here 30 s): an operator who
// drains a backend to take it down for maintenance still holds open
// connections to it well past drain_timeout.
func TestDrainCornerAdminDrainClosesIdleConns(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	b := startBackend(t, "b", nil)
	px := startProxy(t, fmt.Sprintf("drain_timeout: 300ms\ntimeouts: {upstream_idle: 30s}\nroutes: [{pool: web}]\npools:\n  web:\n    algorithm: round_robin\n    backends: [{address: %s}, {address: %s}]\n", addr, b.addr()))
	c := testClient(t)
	for i := 0; i < 4; i++ {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if open.Load() == 0 {
		t.Fatal("no pooled connection to the backend")
	}
	if err := px.ctrl.SetDrain(context.Background(), "web", addr, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second) // drain_timeout 300ms, ticks of 100ms
	for time.Now().Before(deadline) && open.Load() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if n := open.Load(); n > 0 {
		t.Errorf("%d idle connection(s) to the admin-drained backend still open 2s after the drain (drain_timeout 300ms, nothing in flight)", n)
	}
}
