package health

import "sync/atomic"

// Outlier counts consecutive failures of one backend on real traffic. It is
// made for the data plane: Record is lock-free and does not allocate, and
// any number of goroutines may call it at once. The zero Outlier never trips.
type Outlier struct {
	threshold atomic.Int64
	streak    atomic.Int64
}

// NewOutlier returns an Outlier that trips after threshold consecutive
// failures; a threshold <= 0 never trips.
func NewOutlier(threshold int) *Outlier {
	o := &Outlier{}
	o.threshold.Store(int64(threshold))
	return o
}

// SetThreshold changes the threshold (a reload changed the pool's
// outlier_detection); <= 0 turns tripping off. A streak that has not
// tripped yet and already reaches a lowered threshold trips at its next
// failure: Record trips when the streak equals the threshold, which such
// a streak, counting on past it, would never do. A streak that tripped
// already does not trip again under a raised threshold.
func (o *Outlier) SetThreshold(threshold int) {
	t := int64(threshold)
	old := o.threshold.Swap(t)
	for {
		s := o.streak.Load()
		next := t - 1
		switch {
		case t <= 0:
			return
		case old > 0 && s >= old:
			// Tripped already: a raised threshold must not trip this
			// streak a second time as it counts on.
			if s >= t {
				return
			}
			next = t
		case s < t:
			return // below the new threshold
		}
		if o.streak.CompareAndSwap(s, next) {
			return
		}
	}
}

// Record counts the result of one request and reports whether this failure
// completed a streak of threshold consecutive failures. It returns true
// exactly once per streak, to exactly one caller, who should send one
// passive Event (without blocking: see Inbox). A success ends the streak.
//
// Failures after the trip are counted but never trip again until a success
// or Reset: the owner calls Reset when the ejection ends, and also when it
// refuses the ejection (max ejection percent), so that a further streak of
// threshold failures trips again.
func (o *Outlier) Record(failed bool) (trip bool) {
	if !failed {
		// Load first: the common all-good path then only reads the
		// cache line, and does not bounce it between cores.
		if o.streak.Load() != 0 {
			o.streak.Store(0)
		}
		return false
	}
	if o.threshold.Load() <= 0 {
		return false
	}
	// The threshold is read again after the count: a reload may change
	// it in between, and the one failure that reaches the new threshold
	// must compare with it, not with the old one (found by review: with
	// a lowered threshold the streak could pass it untripped for good).
	n := o.streak.Add(1)
	return n == o.threshold.Load()
}

// Reset starts a new streak.
func (o *Outlier) Reset() { o.streak.Store(0) }

// Streak is the current number of consecutive failures.
func (o *Outlier) Streak() int64 { return o.streak.Load() }
