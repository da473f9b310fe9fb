package health

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Found by review. What was wrong: a reload that lowers consecutive_failures while failures are being
// recorded can make the backend immune to ejection for the rest of its
// failure streak. README (Passive checks): "A reload that lowers
// consecutive_failures below a streak already run up ejects at the next
// failure". Record (outlier.go:59-60) loads the threshold and then adds to
// the streak in two steps; SetThreshold (outlier.go:27-38) swaps the
// threshold and sets the streak to t-1. A Record that loaded the old
// threshold before the swap but adds after the CAS takes the streak to
// exactly the new threshold and compares it with the old one: no trip.
// Every later failure takes the streak past the new threshold, so
// Record(true) == (streak == t) never holds again: a backend that keeps
// failing is never ejected until it answers one request well. Here every
// result is a failure and the threshold is lowered from 1e6 to 3 once the
// streak is past 1000: exactly one trip is due, and many rounds get none.
func TestOutlierLoweredThresholdConcurrentFailureStillTrips(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		// Records must run beside SetThreshold.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	deadline := time.Now().Add(3 * time.Second)
	rounds, missed := 0, 0
	for rounds < 300 && time.Now().Before(deadline) {
		rounds++
		o := NewOutlier(1_000_000)
		var trips atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for !stop.Load() {
					if o.Record(true) {
						trips.Add(1)
					}
				}
			})
		}
		for o.Streak() < 1000 {
			runtime.Gosched()
		}
		o.SetThreshold(3) // a reload lowers consecutive_failures
		for base := o.Streak(); o.Streak() < base+1000; {
			runtime.Gosched() // 1000 more failures
		}
		stop.Store(true)
		wg.Wait()
		switch n := trips.Load(); {
		case n == 0:
			missed++
		case n > 1:
			t.Fatalf("round %d: %d trips in one streak, want 1", rounds, n)
		}
		if missed > 0 {
			break
		}
	}
	if missed > 0 {
		t.Errorf("round %d of a streak of failures only: threshold lowered to 3 past a streak of 1000, "+
			"then 1000 more failures and no trip (want exactly one: README \"ejects at the next failure\")", rounds)
	} else {
		t.Logf("%d rounds, each tripped once", rounds)
	}
}

// A streak that tripped does not trip again when a reload raises the
// threshold and the failures go on.
func TestOutlierRaisedAfterTripTripsOnce(t *testing.T) {
	o := NewOutlier(3)
	trips := 0
	for range 3 {
		if o.Record(true) {
			trips++
		}
	}
	o.SetThreshold(5)
	for range 10 {
		if o.Record(true) {
			trips++
		}
	}
	if trips != 1 {
		t.Fatalf("trips = %d, want 1 (one per streak)", trips)
	}
	o.Record(false)
	for range 5 {
		if o.Record(true) {
			trips++
		}
	}
	if trips != 2 {
		t.Fatalf("after a success and 5 failures trips = %d, want 2", trips)
	}
}
