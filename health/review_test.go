package health

import "testing"

// TestOutlierLoweredThresholdTrips: SetThreshold below the streak
// already run up trips at the next failure: Record trips when the streak
// equals the threshold, which a streak of 6 under a new threshold of 3
// would never do again (found by review). End to end:
// proxy.TestOutlierThresholdLoweredBelowStreak.
func TestOutlierLoweredThresholdTrips(t *testing.T) {
	o := NewOutlier(10)
	for range 6 {
		if o.Record(true) {
			t.Fatal("tripped below the threshold of 10")
		}
	}
	o.SetThreshold(3) // a reload lowers consecutive_failures
	tripped := false
	for range 10 {
		if o.Record(true) {
			tripped = true
			break
		}
	}
	if !tripped {
		t.Errorf("no trip in 10 more consecutive failures after the threshold was lowered to 3 (streak %d)", o.Streak())
	}
}
