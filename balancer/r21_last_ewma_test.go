package balancer

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestLastEWMAObserveIsPeakOfDecayed: after ObserveLatency the
// estimate as of that moment is the larger of the sample and the estimate
// the picker read just before (Backend.DecayedEWMA), over random samples
// and gaps; and the ewma picker's choice agrees with comparing
// DecayedEWMA·(in-flight+1)/weight of the two backends.
func TestEWMAObserveIsPeakOfDecayed(t *testing.T) {
	const window = int64(10 * time.Second)
	r := rand.New(rand.NewPCG(21, 2))
	b := NewBackend("web", "10.0.0.1:80")
	now := int64(1e12)
	for i := range 5000 {
		now += r.Int64N(3 * window / 2)
		rtt := r.Int64N(int64(time.Second))
		before := b.DecayedEWMA(now, window)
		b.ObserveLatency(now, rtt, window)
		want := math.Max(before, float64(rtt))
		if got := b.DecayedEWMA(now, window); math.Abs(got-want) > 1e-9*want+1e-9 {
			t.Fatalf("sample %d: estimate %.0f after a %d ns sample over %.0f, want %.0f", i, got, rtt, before, want)
		}
	}

	targets := targetsWithWeights(1, 3)
	a, c := targets[0].Backend, targets[1].Backend
	p := mustBuild(t, "ewma", targets, Options{EWMAWindow: time.Duration(window)})
	for i := range 2000 {
		t0 := int64(1e12) + int64(i)*100*window
		a.ObserveLatency(t0+r.Int64N(window), 1+r.Int64N(int64(time.Second)), window)
		c.ObserveLatency(t0+r.Int64N(window), 1+r.Int64N(int64(time.Second)), window)
		now := t0 + window + r.Int64N(3*window)
		sa := a.DecayedEWMA(now, window) / 1
		sc := c.DecayedEWMA(now, window) / 3
		if math.Abs(sa-sc) < 1e-6*math.Max(sa, sc) {
			continue // a tie within rounding
		}
		want := 0
		if sa > sc {
			want = 1
		}
		// Either draw order must give the lower score.
		for key := range uint64(16) {
			if got := p.Pick(key, now); got != want {
				t.Fatalf("case %d: Pick() = %d, want %d (scores per weight %.0f and %.0f)", i, got, want, sa, sc)
			}
		}
	}
}

// TestLastEWMAPenaltyDecays: a failed attempt's sample of the
// whole response timeout shuns the backend until its estimate has decayed
// below the other's (and no longer), also while the other answers all the
// while.
func TestEWMAPenaltyDecays(t *testing.T) {
	const window = int64(10 * time.Second)
	targets := equalTargets(2)
	bad, good := targets[0].Backend, targets[1].Backend
	p := mustBuild(t, "ewma", targets, Options{EWMAWindow: time.Duration(window)})
	t0 := int64(1e12)
	bad.ObserveLatency(t0, int64(30*time.Second), window)
	good.ObserveLatency(t0, int64(10*time.Millisecond), window)
	// 30 s decays to 10 ms after window·ln(3000), about 80 s.
	cross := t0 + int64(float64(window)*math.Log(3000))
	for now := t0 + int64(time.Millisecond); now < cross-window/10; now += int64(time.Millisecond) * 100 {
		good.ObserveLatency(now, int64(10*time.Millisecond), window)
		if got := p.Pick(uint64(now), now); got != 1 {
			t.Fatalf("%.1f s after the penalty: Pick() = %d, want 1 (the penalised backend reads %.0f ms)",
				float64(now-t0)/1e9, got, bad.DecayedEWMA(now, window)/1e6)
		}
	}
	now := cross + window/10
	good.ObserveLatency(now, int64(10*time.Millisecond), window)
	if got := p.Pick(0, now); got != 0 {
		t.Fatalf("%.1f s after the penalty: Pick() = %d, want 0 (its estimate %.2f ms is below 10 ms)",
			float64(now-t0)/1e9, got, bad.DecayedEWMA(now, window)/1e6)
	}
}
