package health

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// r21FixSpin burns n loop turns on the caller's own sink, to sweep
// the two goroutines' alignment from one round to the next.
func r21FixSpin(sink *int, n int) {
	for range n {
		*sink++
	}
}

// r21FixThresholdRace runs rounds of: a fresh Outlier(from) with a
// streak of preset failures; one goroutine records the next failure while
// this one calls SetThreshold(to) at (nearly) the same moment; then ten
// more failures. Every result is a failure, so each round is one streak,
// which must trip exactly once. It returns the trip count of the first
// round that did not trip once (ok false), or ok true when every round
// within the time given did.
func r21FixThresholdRace(t *testing.T, from, preset, to int) (trips, rounds int, ok bool) {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	var gate, done, tripped atomic.Int64
	var cur atomic.Pointer[Outlier]
	var stop atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var sink int
		for i := int64(1); ; i++ {
			for gate.Load() != i {
				if stop.Load() {
					return
				}
			}
			o := cur.Load()
			r21FixSpin(&sink, int(i%16))
			v := int64(0)
			if o.Record(true) {
				v = 1
			}
			tripped.Store(v)
			done.Store(i)
		}
	}()
	defer func() { stop.Store(true); <-finished }()
	var sink int
	deadline := time.Now().Add(2 * time.Second)
	for i := int64(1); time.Now().Before(deadline); i++ {
		rounds++
		o := NewOutlier(from)
		for range preset {
			o.Record(true)
		}
		cur.Store(o)
		gate.Store(i)
		r21FixSpin(&sink, int((i/16)%16))
		o.SetThreshold(to) // a reload changes consecutive_failures
		for done.Load() != i {
		}
		trips = int(tripped.Load())
		for range 10 {
			if o.Record(true) {
				trips++
			}
		}
		if trips != 1 {
			return trips, rounds, false
		}
	}
	return 1, rounds, true
}

// Found by review. What was wrong: a reload that raises consecutive_failures just as the failure that
// reaches the old threshold is being recorded can leave the streak
// untripped for good: the backend keeps failing and is never ejected
// (until one request succeeds). Record (outlier.go:77-78) adds to the
// streak, then reads the threshold; SetThreshold's new "tripped already"
// branch (outlier.go:36-42) takes a streak >= the old threshold for one
// that tripped and moves it to the new threshold itself. When the swap
// lands between Record's add and its load, Record compares 3 with the new
// 5 (no trip) and SetThreshold sets the streak to 5 (no trip at the 5th
// failure either): every later failure counts past it. README (Passive
// checks): the failure that completes a streak ejects; "a raised one does
// not eject a second time for a streak that ejected already" — this
// streak never ejected once. Expected: exactly one trip per round (at
// the 3rd failure, or at the 5th); actual: some rounds have none.
func TestOutlierThresholdRaisedMidRecordTripsOnce(t *testing.T) {
	if trips, rounds, ok := r21FixThresholdRace(t, 3, 2, 5); !ok {
		t.Fatalf("round %d: threshold raised from 3 to 5 as the 3rd failure was recorded, then 10 more failures: "+
			"%d trips, want exactly 1 (the streak must eject once)", rounds, trips)
	}
}

// Found by review. What was wrong: the mirror race of the above, on a lowered threshold: a reload that
// lowers consecutive_failures to 3 just as the failure that makes the
// streak 3 is recorded trips that one streak twice, so the control plane
// gets two passive events (two ejections, or an ejection and a second
// count against max_ejection_percent) for one run of failures. Record
// (outlier.go:77-78) adds (streak 3), SetThreshold (outlier.go:29-49) sees
// a streak of 3 not below the new threshold 3, and not at the old 100, and
// sets it back to t-1 = 2; Record then compares its 3 with the new 3 and
// trips; the next failure takes the streak to 3 again and trips again.
// outlier.go's own contract (Record): "It returns true exactly once per
// streak". Expected: one trip per round; actual: some rounds have two.
func TestOutlierThresholdLoweredMidRecordTripsOnce(t *testing.T) {
	if trips, rounds, ok := r21FixThresholdRace(t, 100, 2, 3); !ok {
		t.Fatalf("round %d: threshold lowered from 100 to 3 as the 3rd failure was recorded, then 10 more failures: "+
			"%d trips, want exactly 1 (one per streak)", rounds, trips)
	}
}
