package health

import "sync/atomic"

// Outlier counts consecutive failures of one backend on real traffic. It is
// made for the data plane: Record is lock-free and does not allocate, and
// any number of goroutines may call it at once. The zero Outlier never trips.
type Outlier struct {
	threshold atomic.Int64
	// state is the streak's count of failures, shifted left one bit, and
	// in the low bit whether the streak has tripped: one word, so that
	// Record counts and decides with one compare-and-swap, whatever a
	// reload does to the threshold meanwhile (found by review: with the
	// two kept apart, a threshold changed during a Record could leave a
	// failing backend never ejected, or trip one streak twice).
	state atomic.Uint64
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
// failure; one that has tripped does not trip again under a raised one.
func (o *Outlier) SetThreshold(threshold int) {
	o.threshold.Store(int64(threshold))
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
		if o.state.Load() != 0 {
			o.state.Store(0)
		}
		return false
	}
	for {
		t := o.threshold.Load()
		if t <= 0 {
			return false
		}
		s := o.state.Load()
		n, tripped := s>>1+1, s&1 == 1
		// At or past the threshold, not only at it: a lowered threshold
		// below the streak trips at the next failure.
		trip = !tripped && n >= uint64(t)
		next := n << 1
		if tripped || trip {
			next |= 1
		}
		if o.state.CompareAndSwap(s, next) {
			return trip
		}
	}
}

// Reset starts a new streak.
func (o *Outlier) Reset() { o.state.Store(0) }

// Streak is the current number of consecutive failures.
func (o *Outlier) Streak() int64 { return int64(o.state.Load() >> 1) }
