package proxy

import (
	"fmt"
	"testing"
	"time"

	"sluice/health"
)

// r23Batch hands events to the control plane in one batch, as the
// probes and the request path would, built on the control goroutine.
func r23Batch(t *testing.T, px *testProxy, evs func(c *Controller) []health.Event) {
	t.Helper()
	c := px.ctrl
	if err := c.do(t.Context(), func() error {
		for _, e := range evs(c) {
			c.inbox.Put(e)
		}
		c.handleEvents(time.Now())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func r23Event(c *Controller, addr, src string, healthy bool) health.Event {
	return health.Event{Pool: "p", Addr: addr, Source: src, Healthy: healthy, Reason: "test", Epoch: c.members[memberKey{"p", addr}].probeEpoch}
}

// TestLBPanicThresholds: README (Slow start and panic mode):
// "when fewer than that share of a pool's backends are healthy, sluice
// balances over all of them"; an ejected backend is not ready either.
// For each pool size and threshold, taking backends out one at a time
// (actively unhealthy, or ejected) and bringing them back, the pool is in
// panic exactly while ready×100 < threshold×size, and then picks from
// all of them, else from the ready ones only. Holds.
func TestLBPanicThresholds(t *testing.T) {
	for _, tc := range []struct {
		n         int
		threshold string
		eject     bool // take backends out by ejection rather than health
	}{
		{4, "50%", false},
		{4, "75", false},
		{3, "50%", false},
		{10, "0.5", false},
		{4, "100%", false},
		{5, "40%", true},
		{4, "50%", true},
	} {
		t.Run(fmt.Sprintf("n=%d/%s/eject=%v", tc.n, tc.threshold, tc.eject), func(t *testing.T) {
			var bs []*modalBackend
			w := make([]int, tc.n)
			for i := range tc.n {
				bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
				w[i] = 1
			}
			extra := "    panic_threshold: " + tc.threshold + "\n" +
				"    health_check: { interval: 1h, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }\n" +
				"    outlier_detection: { consecutive_failures: 1, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 100 }\n"
			px := startProxy(t, outlierYAML("", bs, w, extra))
			thr := 0.0
			fmt.Sscanf(tc.threshold, "%g", &thr)
			check := func(ready int) {
				t.Helper()
				pl := px.proxy.Current().pools["p"]
				want := float64(ready)*100 < thr*float64(tc.n)
				if pl.panic != want {
					t.Errorf("%d of %d ready, threshold %s: panic %v, want %v", ready, tc.n, tc.threshold, pl.panic, want)
				}
				wantPicks := ready
				if want {
					wantPicks = tc.n
				}
				if pl.picks != wantPicks {
					t.Errorf("%d of %d ready, panic %v: picker over %d backends, want %d", ready, tc.n, want, pl.picks, wantPicks)
				}
			}
			check(tc.n)
			for i := range tc.n {
				r23Batch(t, px, func(c *Controller) []health.Event {
					if tc.eject {
						return []health.Event{r23Event(c, bs[i].addr, health.SourcePassive, false)}
					}
					return []health.Event{r23Event(c, bs[i].addr, health.SourceActive, false)}
				})
				check(tc.n - i - 1)
			}
			if tc.eject {
				return // ejections end only with their time
			}
			for i := range tc.n {
				r23Batch(t, px, func(c *Controller) []health.Event {
					return []health.Event{r23Event(c, bs[i].addr, health.SourceActive, true)}
				})
				check(i + 1)
			}
		})
	}
}

// TestLBMaxEjectionPercent: README (outlier detection):
// max_ejection_percent is "never eject more than this share of a pool (but
// always one, unless 0)". Every backend of a pool trips in turn; the
// number ejected must be the largest k with k×100 <= pct×n, at least 1
// unless pct is 0. Holds.
func TestLBMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		n, pct, want int
	}{
		{10, 50, 5}, {4, 10, 1}, {3, 50, 1}, {5, 40, 2}, {3, 100, 3}, {4, 0, 0}, {7, 30, 2}, {1, 50, 1},
	} {
		t.Run(fmt.Sprintf("n=%d/pct=%d", tc.n, tc.pct), func(t *testing.T) {
			var bs []*modalBackend
			w := make([]int, tc.n)
			for i := range tc.n {
				bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
				w[i] = 1
			}
			extra := fmt.Sprintf("    outlier_detection: { consecutive_failures: 1, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: %d }\n", tc.pct)
			px := startProxy(t, outlierYAML("", bs, w, extra))
			for i := range tc.n {
				r23Batch(t, px, func(c *Controller) []health.Event {
					return []health.Event{r23Event(c, bs[i].addr, health.SourcePassive, false)}
				})
			}
			got := 0
			for _, b := range bs {
				if stateOf(t, px, b.addr).Ejected {
					got++
				}
			}
			if got != tc.want {
				t.Errorf("ejected %d of %d at max_ejection_percent %d, want %d", got, tc.n, tc.pct, tc.want)
			}
			if picks := px.proxy.Current().pools["p"].picks; picks != tc.n-tc.want {
				t.Errorf("picker over %d backends, want %d", picks, tc.n-tc.want)
			}
		})
	}
}

// TestLBSlowStartRampShape: README (Slow start): a joining
// backend "ramps its weight linearly from 10% to its full weight over the
// window", rebuilt every 250 ms, in sixteenths of a weight unit (whole
// units for ring_hash and maglev). Sampled through /admin/pools over a 2 s
// window, the effective weight stays between the line's value a rebuild
// ago and its value now, never goes down, and is the full weight soon
// after the window. Holds.
func TestLBSlowStartRampShape(t *testing.T) {
	for _, tc := range []struct {
		alg    string
		weight int
		scale  float64
	}{
		{"round_robin", 10, 16},
		{"p2c", 3, 16},
		{"maglev", 20, 1},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			t.Parallel() // each mostly waits out its window
			a, c := startBackend(t, "a", nil), startBackend(t, "c", nil)
			const window = 2 * time.Second
			start := [][2]string{{a.addr(), "10"}}
			px := startProxy(t, slowStartYAML(tc.alg, "2s", start))
			joined := time.Now()
			apply(t, px, slowStartYAML(tc.alg, "2s", append(start, [2]string{c.addr(), fmt.Sprint(tc.weight)})))
			full := float64(tc.weight) * tc.scale
			floor := max(1, float64(int(full)/10))
			line := func(d time.Duration) float64 {
				d = max(0, min(d, window))
				return float64(int(floor+(full-floor)*float64(d)/float64(window))) / tc.scale
			}
			prev := 0.0
			for {
				before := time.Since(joined)
				got := stateOf(t, px, c.addr()).EffectiveWeight
				after := time.Since(joined)
				lo, hi := line(before-400*time.Millisecond)-1/tc.scale, line(after)+1/tc.scale
				if got < lo || got > hi {
					t.Errorf("at %v: effective weight %v, want between %v and %v", before.Round(time.Millisecond), got, lo, hi)
				}
				if got < prev {
					t.Errorf("at %v: effective weight went down from %v to %v", before.Round(time.Millisecond), prev, got)
				}
				prev = got
				if before > window+600*time.Millisecond {
					if got != float64(tc.weight) {
						t.Errorf("%v after joining (window %v): effective weight %v, want %d", before.Round(time.Millisecond), window, got, tc.weight)
					}
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := stateOf(t, px, a.addr()).EffectiveWeight; got != 10 {
				t.Errorf("the backend already serving: effective weight %v, want 10", got)
			}
		})
	}
}
