package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/config"
)

// TestOutlierThresholdLoweredBelowStreak: a reload that lowers
// outlier_detection.consecutive_failures below the streak a failing
// backend has already run up must still eject it on its next failure
// (README: "the failure that completes a streak hands one event to the
// control plane"). (Found by review: Outlier.Record trips when the streak
// equals the threshold, so a streak already past the new one never
// tripped, and the dead backend kept its share of requests.)
func TestOutlierThresholdLoweredBelowStreak(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	od := func(n int) string {
		return fmt.Sprintf("    outlier_detection: { consecutive_failures: %d, base_ejection_time: 30s, max_ejection_percent: 50 }\n", n)
	}
	px := startProxy(t, modalYAML(bs, od(10)))
	bs[1].trafficStatus.Store(500)
	c := testClient(t)
	url := "http://" + px.addr + "/"
	for range 12 { // round robin: b fails about 6 times, below 10
		get(t, c, url, nil)
	}
	if st := stateOf(t, px, bs[1].addr).State; st != StateHealthy {
		t.Fatalf("b = %s before the reload, want healthy (streak below 10)", st)
	}
	apply(t, px, modalYAML(bs, od(3)))
	before := bs[1].traffic.Load()
	for range 20 { // b fails about 10 more times in a row
		get(t, c, url, nil)
	}
	time.Sleep(200 * time.Millisecond) // the control plane takes the trip
	got := bs[1].traffic.Load() - before
	if st := stateOf(t, px, bs[1].addr); st.State != StateEjected {
		t.Errorf("b = %s after %d more consecutive 500s under consecutive_failures: 3, want ejected", st.State, got)
	}
}

// TestBackIntoRotationRamps: README (Slow start): "a backend that
// is added, becomes healthy again, comes back from ejection or is
// undrained ramps its weight linearly from 10%"; and a weight going from 0
// to more ramps. Three ways back into rotation that gave the backend its
// full weight at once (found by review) ramp too.
func TestBackIntoRotationRamps(t *testing.T) {
	const slow = "    slow_start: 1h\n"
	t.Run("ejection ended by a reload of outlier_detection", func(t *testing.T) {
		bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
		od := "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50 }\n"
		px := startProxy(t, modalYAML(bs, slow+od))
		bs[1].trafficStatus.Store(500)
		c := testClient(t)
		for range 10 {
			get(t, c, "http://"+px.addr+"/", nil)
		}
		waitFor(t, "b ejected", 2*time.Second, func() bool { return stateOf(t, px, bs[1].addr).State == StateEjected })
		bs[1].trafficStatus.Store(200)
		apply(t, px, modalYAML(bs, slow+"    outlier_detection: { consecutive_failures: 3, base_ejection_time: 30s, max_ejection_percent: 50 }\n"))
		st := stateOf(t, px, bs[1].addr)
		if st.State != StateHealthy {
			t.Fatalf("b = %s after outlier_detection changed, want healthy", st.State)
		}
		if st.EffectiveWeight >= float64(st.Weight) {
			t.Errorf("b back from ejection (ended by the reload): effective weight %v, want below %d (slow start)", st.EffectiveWeight, st.Weight)
		}
	})
	t.Run("unhealthy backend healthy again when its checks are removed", func(t *testing.T) {
		bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
		px := startProxy(t, modalYAML(bs, slow+fastChecks))
		bs[1].healthStatus.Store(503)
		waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
		apply(t, px, modalYAML(bs, slow))
		st := stateOf(t, px, bs[1].addr)
		if !st.Healthy {
			t.Fatal("b still unhealthy after its health check was removed")
		}
		if st.EffectiveWeight >= float64(st.Weight) {
			t.Errorf("b healthy again (checks removed): effective weight %v, want below %d (slow start)", st.EffectiveWeight, st.Weight)
		}
	})
	t.Run("admin weight 0 replaced by a file weight", func(t *testing.T) {
		a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
		px := startProxy(t, slowStartYAML("round_robin", "1h", [][2]string{{a.addr(), "10"}, {b.addr(), "10"}}))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := px.ctrl.SetWeight(ctx, "p", b.addr(), 0); err != nil {
			t.Fatal(err)
		}
		if w := stateOf(t, px, b.addr()).EffectiveWeight; w != 0 {
			t.Fatalf("b at admin weight 0: effective weight %v, want 0", w)
		}
		// The file changes b's weight: README, the file replaces the
		// admin weight, so b goes from weight 0 to 20.
		apply(t, px, slowStartYAML("round_robin", "1h", [][2]string{{a.addr(), "10"}, {b.addr(), "20"}}))
		st := stateOf(t, px, b.addr())
		if st.AdminWeight != nil {
			t.Fatalf("admin weight %d kept after the file changed the weight, want replaced", *st.AdminWeight)
		}
		if st.EffectiveWeight >= 20 {
			t.Errorf("b from weight 0 (admin) to 20 (file): effective weight %v, want below 20 (slow start)", st.EffectiveWeight)
		}
	})
}

// TestStaleProbeEventAfterChecksRemoved: a probe's "unhealthy"
// that is still in the controller's inbox when a reload removes the pool's
// health_check is dropped (its probe run's Epoch is no longer the
// backend's). Applied, as it was until review found it, it left the
// backend unhealthy with no check left to bring it back
// (TestHealthAndEjectionEndWithTheirConfig covers only the case where the
// event was taken before the reload). The control goroutine is held busy
// for a moment (as a long reconcile or admin call would) so that the probe
// failure and the reload meet; Go's select then takes the reload first
// half of the time, so a few rounds find it.
func TestStaleProbeEventAfterChecksRemoved(t *testing.T) {
	a, b := newModalBackend(t, "a"), newModalBackend(t, "b")
	bs := []*modalBackend{a, b}
	checks := "    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 1 }\n"
	px := startProxy(t, modalYAML(bs, checks))
	for round := range 16 {
		b.healthStatus.Store(200)
		apply(t, px, modalYAML(bs, checks)) // checks (re)start afresh
		waitFor(t, "b probed and healthy", 2*time.Second, func() bool {
			return b.probes.Load() > 0 && stateOf(t, px, b.addr).Healthy
		})
		probes := b.probes.Load()

		holdDone := holdWhileProbeFails(px, b, probes, nil)
		reloaded := make(chan error, 1)
		go func() {
			cfgYAML := modalYAML(bs, "") // health_check removed
			reloaded <- applyErr(px, cfgYAML)
		}()
		if err := <-holdDone; err != nil {
			t.Fatal(err)
		}
		if err := <-reloaded; err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the inbox is taken
		if st := stateOf(t, px, b.addr); !st.Healthy {
			sent := b.probes.Load()
			time.Sleep(300 * time.Millisecond)
			st = stateOf(t, px, b.addr)
			if !st.Healthy && b.probes.Load() == sent {
				t.Fatalf("round %d: b %s (%q) after the reload removed health_check, with no probe running to bring it back", round, st.State, st.HealthReason)
			}
		}
	}
}

func applyErr(px *testProxy, yml string) error {
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		return err
	}
	return px.ctrl.Apply(context.Background(), cfg)
}

// TestStaleProbeEventIntoReaddedBackend: a probe's "unhealthy"
// still in the inbox when two reloads remove a backend and put it back is
// not applied to the new member (found by review: it was, and as the new
// member's probes start afresh, where a first success sends no event, the
// backend stayed unhealthy, probed and passing, for good). The control goroutine is held
// busy meanwhile, as in TestStaleProbeEventAfterChecksRemoved; both
// reloads must beat the inbox in Go's select (1 in 4 per round).
func TestStaleProbeEventIntoReaddedBackend(t *testing.T) {
	a, b := newModalBackend(t, "a"), newModalBackend(t, "b")
	checks := "    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 10, unhealthy_threshold: 1 }\n"
	with, without := modalYAML([]*modalBackend{a, b}, checks), modalYAML([]*modalBackend{a}, checks)
	px := startProxy(t, with)
	for round := range 30 {
		waitFor(t, "b probed and healthy", 2*time.Second, func() bool {
			return b.probes.Load() > 0 && stateOf(t, px, b.addr).Healthy
		})
		probes := b.probes.Load()
		release := make(chan struct{})
		holdDone := holdWhileProbeFails(px, b, probes, func() {
			// "unhealthy" is in the inbox; b is fine again.
			b.healthStatus.Store(200)
			<-release
		})
		// Parsed here, not in the goroutines: under -race on a loaded
		// machine a parse took longer than the 20 ms head start, and the
		// re-add was queued before the removal (b then left for good).
		cfgWithout, cfgWith := mustParse(t, without), mustParse(t, with)
		removed, readded := make(chan error, 1), make(chan error, 1)
		go func() { removed <- px.ctrl.Apply(context.Background(), cfgWithout) }()
		time.Sleep(20 * time.Millisecond) // queued first
		go func() { readded <- px.ctrl.Apply(context.Background(), cfgWith) }()
		time.Sleep(20 * time.Millisecond)
		close(release)
		for _, ch := range []<-chan error{holdDone, removed, readded} {
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := findStatus(t, px, b.addr); !ok {
			// Still queued out of order (a starved goroutine): not the
			// case under test; put b back and go on.
			if err := applyErr(px, with); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if stateOf(t, px, b.addr).Healthy {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Give the new probes time: with b answering 200 they must
		// bring it back within healthy_threshold intervals at worst.
		sent := b.probes.Load()
		time.Sleep(time.Second)
		if st := stateOf(t, px, b.addr); !st.Healthy && b.probes.Load() > sent && b.healthStatus.Load() == 200 {
			t.Fatalf("round %d: re-added b %s (%q) for 1s while %d probes passed: the removed member's probe event was applied to it, and nothing will put it back",
				round, st.State, st.HealthReason, b.probes.Load()-sent)
		}
	}
}

func mustParse(t *testing.T, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// holdWhileProbeFails keeps the control goroutine busy while b's checks
// fail (its probes past probes+2, at most 2 s), so that the probe's
// "unhealthy" waits in the inbox; then, inside the hold, runs then (if not
// nil). It returns once the hold has begun; the channel gets its result.
func holdWhileProbeFails(px *testProxy, b *modalBackend, probes int64, then func()) <-chan error {
	held, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- px.ctrl.do(context.Background(), func() error {
			close(held)
			b.healthStatus.Store(503)
			deadline := time.Now().Add(2 * time.Second)
			for b.probes.Load() < probes+2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if then != nil {
				then()
			}
			return nil
		})
	}()
	<-held
	return done
}
