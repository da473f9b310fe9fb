package proxy

import (
	"context"
	"testing"
	"time"

	"sluice/config"
	"sluice/health"
	"sluice/metrics"
)

// r25AdminopsShares sends n GETs through px and returns each
// backend's share of them (by X-Backend).
func r25AdminopsShares(t *testing.T, px *testProxy, n int) map[string]float64 {
	t.Helper()
	c := testClient(t)
	counts := map[string]int{}
	for range n {
		code, be, _ := get(t, c, "http://"+px.addr+"/", nil)
		if code != 200 {
			t.Fatalf("GET / = %d from %q, want 200", code, be)
		}
		counts[be]++
	}
	out := map[string]float64{}
	for k, v := range counts {
		out[k] = float64(v) / float64(n)
	}
	return out
}

// r25AdminopsView is what /admin/pools and the metrics say of addr.
type r25AdminopsView struct {
	st     BackendStatus
	weight float64 // sluice_backend_weight
	up     float64 // sluice_backend_up
	state  string  // the state whose sluice_backend_state is 1
}

func r25AdminopsLook(t *testing.T, px *testProxy, m *metrics.Metrics, addr string) r25AdminopsView {
	t.Helper()
	v := r25AdminopsView{st: stateOf(t, px, addr)}
	v.weight, _ = reviewGauge(t, m, "sluice_backend_weight", addr)
	v.up, _ = reviewGauge(t, m, "sluice_backend_up", addr)
	for _, s := range []string{"healthy", "unhealthy", "draining", "ejected"} {
		if g, _ := gaugeState(t, m, addr, s); g == 1 {
			v.state += s
		}
	}
	return v
}

// r25AdminopsExpect checks status, metrics and share of one backend.
func r25AdminopsExpect(t *testing.T, step string, v r25AdminopsView, share float64,
	state string, adminWeight int, eff float64, lo, hi float64) {
	t.Helper()
	aw := -1
	if v.st.AdminWeight != nil {
		aw = int(*v.st.AdminWeight)
	}
	if v.st.State != state || v.state != state {
		t.Errorf("%s: %s state %q in /admin/pools, %q in metrics, want %q", step, v.st.Address, v.st.State, v.state, state)
	}
	if aw != adminWeight {
		t.Errorf("%s: %s admin_weight %d, want %d (-1: none)", step, v.st.Address, aw, adminWeight)
	}
	if v.st.EffectiveWeight != eff || v.weight != eff {
		t.Errorf("%s: %s effective_weight %v, sluice_backend_weight %v, want %v", step, v.st.Address, v.st.EffectiveWeight, v.weight, eff)
	}
	if wantUp := eff > 0; (v.up == 1) != wantUp {
		t.Errorf("%s: %s sluice_backend_up %v, want %v", step, v.st.Address, v.up, wantUp)
	}
	if share < lo || share > hi {
		t.Errorf("%s: %s took %.2f of the traffic, want %.2f..%.2f", step, v.st.Address, share, lo, hi)
	}
}

// TestAdminopsStateThroughReloadsHealthAndTraffic: an admin weight
// and an admin drain through reloads that keep the backend (identical,
// new upstream timeouts, another backend's weight), a reload changing
// the backend's own weight, health transitions while drained, a weight 0
// under a drain; at each step /admin/pools, the metrics and the traffic
// shares agree with README (Runtime admin API).
func TestAdminopsStateThroughReloadsHealthAndTraffic(t *testing.T) {
	a, b := newModalBackend(t, "a"), newModalBackend(t, "b")
	m := metrics.New("test")
	bs := []*modalBackend{a, b}
	px := startProxyWith(t, outlierYAML("", bs, []int{1, 1}, ""), m)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	step := func(name string, wa, wb struct {
		state string
		aw    int
		eff   float64
		lo    float64
		hi    float64
	}) {
		t.Helper()
		sh := r25AdminopsShares(t, px, 200)
		r25AdminopsExpect(t, name, r25AdminopsLook(t, px, m, a.addr), sh["a"], wa.state, wa.aw, wa.eff, wa.lo, wa.hi)
		r25AdminopsExpect(t, name, r25AdminopsLook(t, px, m, b.addr), sh["b"], wb.state, wb.aw, wb.eff, wb.lo, wb.hi)
	}
	type w = struct {
		state string
		aw    int
		eff   float64
		lo    float64
		hi    float64
	}
	must(px.ctrl.SetWeight(ctx, "p", a.addr, 3))
	step("admin weight 3", w{"healthy", 3, 3, 0.65, 0.85}, w{"healthy", -1, 1, 0.15, 0.35})
	apply(t, px, outlierYAML("", bs, []int{1, 1}, ""))
	step("identical reload", w{"healthy", 3, 3, 0.65, 0.85}, w{"healthy", -1, 1, 0.15, 0.35})
	apply(t, px, outlierYAML("timeouts: {response: 7s}\n", bs, []int{1, 1}, ""))
	step("new upstream timeouts", w{"healthy", 3, 3, 0.65, 0.85}, w{"healthy", -1, 1, 0.15, 0.35})
	apply(t, px, outlierYAML("timeouts: {response: 7s}\n", bs, []int{1, 2}, ""))
	step("b's file weight 2", w{"healthy", 3, 3, 0.5, 0.7}, w{"healthy", -1, 2, 0.3, 0.5})
	apply(t, px, outlierYAML("timeouts: {response: 7s}\n", bs, []int{2, 2}, ""))
	step("a's file weight 2", w{"healthy", -1, 2, 0.4, 0.6}, w{"healthy", -1, 2, 0.4, 0.6})
	must(px.ctrl.SetDrain(ctx, "p", b.addr, true))
	step("b drained", w{"healthy", -1, 2, 1, 1}, w{"draining", -1, 0, 0, 0})
	injectEvents(t, px.ctrl, health.Event{Pool: "p", Addr: b.addr, Source: health.SourceActive, Healthy: false, Reason: "x"})
	step("b unhealthy while drained", w{"healthy", -1, 2, 1, 1}, w{"draining", -1, 0, 0, 0})
	injectEvents(t, px.ctrl, health.Event{Pool: "p", Addr: b.addr, Source: health.SourceActive, Healthy: true})
	step("b healthy while drained", w{"healthy", -1, 2, 1, 1}, w{"draining", -1, 0, 0, 0})
	apply(t, px, outlierYAML("timeouts: {response: 8s}\n", bs, []int{2, 3}, ""))
	step("reload: b's weight and timeouts", w{"healthy", -1, 2, 1, 1}, w{"draining", -1, 0, 0, 0})
	must(px.ctrl.SetWeight(ctx, "p", b.addr, 0))
	must(px.ctrl.SetDrain(ctx, "p", b.addr, false))
	step("b undrained at admin weight 0", w{"healthy", -1, 2, 1, 1}, w{"healthy", 0, 0, 0, 0})
	must(px.ctrl.SetWeight(ctx, "p", b.addr, 6))
	step("b admin weight 6", w{"healthy", -1, 2, 0.15, 0.35}, w{"healthy", 6, 6, 0.65, 0.85})
}

// TestAdminopsSlowStartFromAdminZero: weight 0 → N through the
// API ramps as README says: from a tenth of N (the floor, on the ×16
// scale) up to N over slow_start; /admin/pools and sluice_backend_weight
// show the same fractional weight meanwhile, and the traffic follows:
// little at first, an even split once the ramp is done.
func TestAdminopsSlowStartFromAdminZero(t *testing.T) {
	a, b := newModalBackend(t, "a"), newModalBackend(t, "b")
	m := metrics.New("test")
	bs := []*modalBackend{a, b}
	px := startProxyWith(t, outlierYAML("", bs, []int{10, 10}, "    slow_start: 2s\n"), m)
	ctx := context.Background()
	if err := px.ctrl.SetWeight(ctx, "p", b.addr, 0); err != nil {
		t.Fatal(err)
	}
	if sh := r25AdminopsShares(t, px, 50); sh["b"] != 0 {
		t.Errorf("b at admin weight 0 took %.2f of the traffic", sh["b"])
	}
	if err := px.ctrl.SetWeight(ctx, "p", b.addr, 10); err != nil {
		t.Fatal(err)
	}
	v := r25AdminopsLook(t, px, m, b.addr)
	if v.st.EffectiveWeight < 1 || v.st.EffectiveWeight >= 5 || v.weight != v.st.EffectiveWeight {
		t.Errorf("right after weight 0 → 10: effective_weight %v, metric %v, want from 1 (a tenth) and below 5, equal", v.st.EffectiveWeight, v.weight)
	}
	if sh := r25AdminopsShares(t, px, 60); sh["b"] > 0.35 {
		t.Errorf("b in its first moments of ramp took %.2f of the traffic, want well under half", sh["b"])
	}
	last := v.st.EffectiveWeight
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		v = r25AdminopsLook(t, px, m, b.addr)
		if v.st.EffectiveWeight < last {
			t.Errorf("ramp went back: %v after %v", v.st.EffectiveWeight, last)
		}
		last = v.st.EffectiveWeight
		if last == 10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != 10 {
		t.Fatalf("b's effective weight %v after the 2 s ramp, want 10", last)
	}
	if sh := r25AdminopsShares(t, px, 200); sh["b"] < 0.4 || sh["b"] > 0.6 {
		t.Errorf("after the ramp b took %.2f, want about half", sh["b"])
	}
	if w, _ := reviewGauge(t, m, "sluice_backend_weight", b.addr); w != 10 {
		t.Errorf("sluice_backend_weight of b after the ramp = %v, want 10", w)
	}
}

// TestAdminopsDNSAnswersAndAdminState: on a DNS pool, an admin
// weight and drain stay while answers reorder the addresses or change
// another address's weight; an answer changing the backend's own (SRV)
// weight replaces the admin weight but not the drain.
func TestAdminopsDNSAnswersAndAdminState(t *testing.T) {
	a, b, c := newModalBackend(t, "a"), newModalBackend(t, "b"), newModalBackend(t, "c")
	yml := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    discovery: {dns: {name: x.test, port: 80, type: SRV, interval: 10s}}\n"
	px := startProxy(t, yml)
	cfg, err := config.Parse("t.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	dns := *cfg.Pools["p"].Discovery.DNS
	ctx := context.Background()
	set := func(ds ...DiscoveredBackend) {
		t.Helper()
		if err := px.ctrl.SetDiscovered(ctx, "p", dns, ds); err != nil {
			t.Fatal(err)
		}
	}
	set(DiscoveredBackend{a.addr, 1}, DiscoveredBackend{b.addr, 1}, DiscoveredBackend{c.addr, 1})
	if err := px.ctrl.SetWeight(ctx, "p", a.addr, 6); err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.SetDrain(ctx, "p", c.addr, true); err != nil {
		t.Fatal(err)
	}
	check := func(step string, aw int, weight uint32, lo, hi float64) {
		t.Helper()
		sa, sc := stateOf(t, px, a.addr), stateOf(t, px, c.addr)
		got := -1
		if sa.AdminWeight != nil {
			got = int(*sa.AdminWeight)
		}
		if got != aw || sa.Weight != weight {
			t.Errorf("%s: a weight %d admin_weight %d, want %d and %d", step, sa.Weight, got, weight, aw)
		}
		if !sc.AdminDrained {
			t.Errorf("%s: c's drain lost: %+v", step, sc)
		}
		sh := r25AdminopsShares(t, px, 140)
		if sh["a"] < lo || sh["a"] > hi || sh["c"] != 0 {
			t.Errorf("%s: a took %.2f (want %.2f..%.2f), drained c %.2f", step, sh["a"], lo, hi, sh["c"])
		}
	}
	check("start", 6, 1, 0.75, 0.95)
	set(DiscoveredBackend{c.addr, 1}, DiscoveredBackend{b.addr, 1}, DiscoveredBackend{a.addr, 1})
	check("reordered", 6, 1, 0.75, 0.95)
	set(DiscoveredBackend{b.addr, 2}, DiscoveredBackend{a.addr, 1}, DiscoveredBackend{c.addr, 1})
	check("b's weight changed", 6, 1, 0.65, 0.85)
	set(DiscoveredBackend{b.addr, 2}, DiscoveredBackend{a.addr, 4}, DiscoveredBackend{c.addr, 5})
	check("a's own weight changed", -1, 4, 0.55, 0.78)
}

// TestAdminopsPanicIgnoresDrained: a drained backend counts in
// neither side of panic_threshold and takes no traffic in panic mode;
// undrained, it joins the spread.
func TestAdminopsPanicIgnoresDrained(t *testing.T) {
	a, b, c := newModalBackend(t, "a"), newModalBackend(t, "b"), newModalBackend(t, "c")
	m := metrics.New("test")
	bs := []*modalBackend{a, b, c}
	px := startProxyWith(t, outlierYAML("", bs, []int{1, 1, 1}, "    panic_threshold: 50%\n"), m)
	ctx := context.Background()
	if err := px.ctrl.SetDrain(ctx, "p", a.addr, true); err != nil {
		t.Fatal(err)
	}
	injectEvents(t, px.ctrl,
		health.Event{Pool: "p", Addr: b.addr, Source: health.SourceActive, Healthy: false, Reason: "x"},
		health.Event{Pool: "p", Addr: c.addr, Source: health.SourceActive, Healthy: false, Reason: "x"})
	panicOf := func() bool {
		st, err := px.ctrl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st[0].Panic
	}
	if !panicOf() || reviewScalar(t, m, "sluice_pool_panic_mode") != 1 {
		t.Fatalf("a drained, b and c unhealthy: panic_mode %v, metric %v, want on", panicOf(), reviewScalar(t, m, "sluice_pool_panic_mode"))
	}
	sh := r25AdminopsShares(t, px, 120)
	if sh["a"] != 0 || sh["b"] < 0.35 || sh["c"] < 0.35 {
		t.Errorf("panic mode with a drained: shares %v, want b and c about half each, a none", sh)
	}
	if err := px.ctrl.SetDrain(ctx, "p", a.addr, false); err != nil {
		t.Fatal(err)
	}
	if !panicOf() {
		t.Errorf("a undrained (1 healthy of 3): panic_mode off, want on")
	}
	sh = r25AdminopsShares(t, px, 150)
	for _, n := range []string{"a", "b", "c"} {
		if sh[n] < 0.2 || sh[n] > 0.47 {
			t.Errorf("panic mode over three: shares %v, want about a third each", sh)
			break
		}
	}
}

// TestAdminopsEjectionKeepsAdminState: an ejection of a backend
// with an admin weight keeps the weight (shown, and in force once the
// ejection ends); an undrain while ejected leaves it out until the
// ejection ends. /admin/pools, the metrics and the traffic agree.
func TestAdminopsEjectionKeepsAdminState(t *testing.T) {
	a, b, c := newModalBackend(t, "a"), newModalBackend(t, "b"), newModalBackend(t, "c")
	m := metrics.New("test")
	od := "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 600ms, max_ejection_time: 1s, max_ejection_percent: 100 }\n"
	bs := []*modalBackend{a, b, c}
	px := startProxyWith(t, outlierYAML("", bs, []int{1, 1, 1}, od), m)
	ctx := context.Background()
	if err := px.ctrl.SetWeight(ctx, "p", a.addr, 4); err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.SetDrain(ctx, "p", c.addr, true); err != nil {
		t.Fatal(err)
	}
	injectEvents(t, px.ctrl,
		health.Event{Pool: "p", Addr: a.addr, Source: health.SourcePassive},
		health.Event{Pool: "p", Addr: c.addr, Source: health.SourcePassive})
	va := r25AdminopsLook(t, px, m, a.addr)
	sh := r25AdminopsShares(t, px, 40)
	r25AdminopsExpect(t, "a ejected", va, sh["a"], "ejected", 4, 0, 0, 0)
	if err := px.ctrl.SetDrain(ctx, "p", c.addr, false); err != nil {
		t.Fatal(err)
	}
	vc := r25AdminopsLook(t, px, m, c.addr)
	r25AdminopsExpect(t, "c undrained while ejected", vc, sh["c"], "ejected", -1, 0, 0, 0)
	waitFor(t, "ejections to end", 5*time.Second, func() bool {
		return !stateOf(t, px, a.addr).Ejected && !stateOf(t, px, c.addr).Ejected
	})
	sh = r25AdminopsShares(t, px, 180)
	r25AdminopsExpect(t, "a back", r25AdminopsLook(t, px, m, a.addr), sh["a"], "healthy", 4, 4, 0.55, 0.8)
	r25AdminopsExpect(t, "c back", r25AdminopsLook(t, px, m, c.addr), sh["c"], "healthy", -1, 1, 0.08, 0.25)
}
