package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"sluice/config"
	"sluice/health"
	"sluice/metrics"
)

// injectEvents folds events into the controller at once.
func injectEvents(t *testing.T, c *Controller, evs ...health.Event) {
	t.Helper()
	if err := c.do(context.Background(), func() error {
		for i := range evs {
			evs[i].Epoch = c.members[memberKey{evs[i].Pool, evs[i].Addr}].probeEpoch
			c.inbox.Put(evs[i])
		}
		c.handleEvents(time.Now())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checkAgree checks that /admin/pools, the metrics and the picker agree
// on every backend of pool p.
func checkAgree(t *testing.T, step string, px *testProxy, m *metrics.Metrics) {
	t.Helper()
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pl := px.proxy.Current().pools["p"]
	scale := 1.0
	if pc := px.proxy.Current().Config.Pools["p"]; pc.SlowStart > 0 && pc.Algorithm != "ring_hash" && pc.Algorithm != "maglev" {
		scale = rampScale
	}
	for _, ps := range st {
		if ps.Name != "p" {
			continue
		}
		if ps.Panic != pl.panic {
			t.Errorf("%s: status panic %v, pool panic %v", step, ps.Panic, pl.panic)
		}
		for _, b := range ps.Backends {
			if b.Source == "leaving" {
				continue
			}
			in, w := false, 0.0
			for i, up := range pl.targets[:pl.picks] {
				if up.backend.Addr == b.Address {
					in, w = true, float64(pl.built[i].Weight)/scale
				}
			}
			up, _ := reviewGauge(t, m, "sluice_backend_up", b.Address)
			if (up == 1) != in {
				t.Errorf("%s: %s up=%v, in picks %v (state %s)", step, b.Address, up, in, b.State)
			}
			mw, _ := reviewGauge(t, m, "sluice_backend_weight", b.Address)
			if mw != w || b.EffectiveWeight != w {
				t.Errorf("%s: %s metric weight %v, status effective %v, picker %v", step, b.Address, mw, b.EffectiveWeight, w)
			}
			if v := backendGauge(t, m, "sluice_backend_state", b.Address, b.State); v != 1 {
				t.Errorf("%s: %s state %s in status, metric %v", step, b.Address, b.State, v)
			}
		}
	}
}

// TestCtrlStatusMetricsPickerAgree: through admin drains and
// weights, active health transitions, an ejection, panic mode, a slow
// start and a settings reload, /admin/pools (state, effective_weight,
// panic_mode), the metrics (sluice_backend_up, _weight, _state) and the
// picker's targets and weights say the same of every backend, for each
// kind of picker (README, Runtime admin API and Metrics). Passed on the
// code reviewed in session 18; kept as a regression test.
func TestCtrlStatusMetricsPickerAgree(t *testing.T) {
	for _, alg := range []string{"round_robin", "sticky", "ring_hash", "maglev", "least_conn", "ewma"} {
		t.Run(alg, func(t *testing.T) { agreeRun(t, alg) })
	}
}

func agreeRun(t *testing.T, alg string) {
	var bs []*modalBackend
	for i := range 4 {
		bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
	}
	m := metrics.New("test")
	od := "    panic_threshold: 50%\n    slow_start: 1h\n    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 100 }\n"
	if alg == "ring_hash" || alg == "maglev" {
		od += "    hash_key: path\n"
	}
	yml := func(w []int) string {
		return strings.Replace(outlierYAML("", bs, w, od), "round_robin", alg, 1)
	}
	px := startProxyWith(t, yml([]int{2, 2, 2, 2}), m)
	ctx := context.Background()
	c := px.ctrl
	checkAgree(t, "start", px, m)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.SetDrain(ctx, "p", bs[0].addr, true))
	checkAgree(t, "drain b0", px, m)
	injectEvents(t, c, health.Event{Pool: "p", Addr: bs[1].addr, Source: health.SourceActive, Healthy: false, Reason: "x"})
	checkAgree(t, "b1 unhealthy", px, m)
	injectEvents(t, c, health.Event{Pool: "p", Addr: bs[2].addr, Source: health.SourcePassive})
	checkAgree(t, "b2 ejected", px, m)
	if !px.proxy.Current().pools["p"].panic {
		t.Fatal("b0 drained, b1 unhealthy, b2 ejected: 1 ready of 3, want panic mode (50%)")
	}
	must(c.SetWeight(ctx, "p", bs[3].addr, 0))
	checkAgree(t, "b3 weight 0", px, m)
	must(c.SetWeight(ctx, "p", bs[3].addr, 5))
	checkAgree(t, "b3 weight 5", px, m)
	injectEvents(t, c, health.Event{Pool: "p", Addr: bs[3].addr, Source: health.SourceActive, Healthy: false, Reason: "x"})
	checkAgree(t, "b3 unhealthy", px, m)
	must(c.SetDrain(ctx, "p", bs[0].addr, false))
	checkAgree(t, "undrain b0", px, m)
	apply(t, px, "timeouts: {response: 7s}\n"+yml([]int{2, 3, 2, 2}))
	checkAgree(t, "reload", px, m)
	time.Sleep(300 * time.Millisecond)
	checkAgree(t, "ramp", px, m)
}

// TestCtrlDrainSurvivesSourceChanges: an admin drain stays while
// the backend stays in the pool, whichever source lists it: listed in the
// file and found by DNS, then by DNS alone (the file drops it), through a
// reload that changes only the discovery interval and the pool's other
// settings, then by the file alone (discovery removed). It is never
// listed as leaving (README, Runtime admin API: "a drain or weight set
// through the API stays in force across reloads as long as the backend
// stays in the pool"). Passed in session 18; kept as a regression test.
func TestCtrlDrainSurvivesSourceChanges(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	ctx := context.Background()
	pool := func(static []string, dns string, extra string) string {
		y := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n" + extra
		if dns != "" {
			y += "    discovery: {dns: {name: x.test, port: 80, type: A, interval: " + dns + "}}\n"
		}
		if len(static) > 0 {
			y += "    backends:\n"
			for _, s := range static {
				y += fmt.Sprintf("      - {address: %s}\n", s)
			}
		}
		return y
	}
	px := startProxy(t, pool([]string{a.addr(), b.addr()}, "10s", ""))
	cfg, err := config.Parse("t.yaml", []byte(pool([]string{a.addr(), b.addr()}, "10s", "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.SetDiscovered(ctx, "p", *cfg.Pools["p"].Discovery.DNS, []DiscoveredBackend{{Address: b.addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := px.ctrl.SetDrain(ctx, "p", b.addr(), true); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		st := stateOf(t, px, b.addr())
		if !st.AdminDrained {
			t.Errorf("%s: drain lost: %+v", step, st)
		}
		if l := leavingOf(t, px, b.addr()); len(l) != 0 {
			t.Errorf("%s: leaving rows %+v", step, l)
		}
		pl := px.proxy.Current().pools["p"]
		for _, up := range pl.targets[:pl.picks] {
			if up.backend.Addr == b.addr() {
				t.Errorf("%s: drained b in picks", step)
			}
		}
	}
	check("start")
	apply(t, px, pool([]string{a.addr()}, "10s", ""))
	check("file drops b, dns has it")
	apply(t, px, pool([]string{a.addr()}, "20s", "    slow_start: 10s\n"))
	check("interval change")
	apply(t, px, pool([]string{a.addr(), b.addr()}, "", ""))
	check("dns removed, b static again")
}
