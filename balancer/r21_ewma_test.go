package balancer

import (
	"math"
	"testing"
	"time"
)

// Found by review. What was wrong: a latency sample below a backend's current estimate raises the
// estimate. The picker reads a backend's estimate decayed to the request's
// clock (peakEWMA.slower, Backend.DecayedEWMA: "the estimate as of now"),
// but Backend.ObserveLatency (backend.go:64-84, the blend at :81) blends
// the new sample with the raw, undecayed value it stored at the last
// sample: next =
// old·e^(−elapsed/W) + rtt·(1 − e^(−elapsed/W)), which is the decayed
// estimate plus rtt·(1 − e^(−elapsed/W)), always above the decayed
// estimate. So after a spike has decayed, a fast answer pushes the backend
// back up: here A (a 1 s spike one window ago, now read as 368 ms) answers
// in 100 ms and reads 431 ms afterwards, and loses to B (400 ms) although
// it just answered four times faster. README ("ewma"): a slow backend "is
// tried again as its estimate decays" — with this, each good answer of a
// backend coming back re-shuns it. Finagle's peak-EWMA (named in README)
// and tower's persist the decay when they read the cost (Finagle's get()
// calls observe(0); tower's load() calls decay()), so a sample blends
// with the decayed value and a sample below the estimate can only lower it.
func TestEWMAFastSampleLowersEstimate(t *testing.T) {
	const window = int64(10 * time.Second)
	t0 := int64(1e12)
	t1 := t0 + window
	targets := equalTargets(2)
	a, b := targets[0].Backend, targets[1].Backend
	a.ObserveLatency(t0, int64(time.Second), window)          // spike, then silence
	b.ObserveLatency(t1, int64(400*time.Millisecond), window) // steady 400 ms
	p := mustBuild(t, "ewma", targets, Options{EWMAWindow: time.Duration(window)})

	before := a.DecayedEWMA(t1, window)
	if got := p.Pick(1, t1); got != 0 {
		t.Fatalf("precondition: Pick() = %d, want 0 (A's decayed estimate %.0f ms is below B's 400 ms)", got, before/1e6)
	}
	// A takes the request and answers in 100 ms.
	a.ObserveLatency(t1, int64(100*time.Millisecond), window)
	after := a.DecayedEWMA(t1, window)
	t.Logf("A's estimate: %.1f ms before a 100 ms answer, %.1f ms after", before/1e6, after/1e6)
	if after > before {
		t.Errorf("A's estimate rose from %.1f ms to %.1f ms on a 100 ms answer, want it to stay at or fall below %.1f ms", before/1e6, after/1e6, before/1e6)
	}
	for key := range uint64(8) {
		if got := p.Pick(key, t1); got != 0 {
			t.Fatalf("Pick() after A answered in 100 ms = %d (B, estimate 400 ms), want 0 (A)", got)
		}
	}
}

// TestEWMADecaysOverWindowUnderTraffic: README (ewma) says a spike
// "decays over ewma_window"; answers faster than the estimate coming all
// the while do not make it decay faster (found by review of the fix
// above, which blended them in on top of the decay: after one window of
// 10 ms answers a 100 ms spike read 17.9 ms, not e^-1 of it).
func TestEWMADecaysOverWindowUnderTraffic(t *testing.T) {
	const window = int64(10 * time.Second)
	for _, tt := range []struct {
		name  string
		every int64 // between answers; 0: none
	}{
		{"idle", 0},
		{"an answer every 100 ms", int64(100 * time.Millisecond)},
		{"an answer every ms", int64(time.Millisecond)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := equalTargets(1)[0].Backend
			t0 := int64(1e12)
			b.ObserveLatency(t0, int64(100*time.Millisecond), window)
			if tt.every > 0 {
				for now := t0 + tt.every; now <= t0+window; now += tt.every {
					b.ObserveLatency(now, int64(10*time.Millisecond), window)
				}
			}
			got := b.DecayedEWMA(t0+window, window) / 1e6
			want := 100 * math.Exp(-1)
			// Within 3%: expNeg's small error compounds over 10,000
			// samples (doubled decay would read 13.5 ms).
			if math.Abs(got-want) > 0.03*want {
				t.Errorf("estimate a window after a 100 ms spike = %.2f ms, want %.2f ms (e^-1 of it)", got, want)
			}
		})
	}
}
