package balancer

// peakEWMA is Finagle's peak-EWMA with P2C draws: of two weighted random
// targets it takes the one with the lower expected wait, latency estimate
// × (in-flight + 1), per unit of weight. The estimate is read decayed to
// the request's clock, so a backend shunned for being slow is tried again
// once its estimate has decayed below the others'; and a backend with no
// samples scores 0 while idle, so new backends get tried at once. One
// with no sample yet but requests in flight loses to any other (Finagle's
// penalty): scored 0 × (in-flight + 1), a new backend that is slow to
// answer won every draw it was in until its first answer (found by
// review).
type peakEWMA struct {
	set    *weightedSet
	window float64 // nanoseconds
}

func newEWMA(targets []Target, opts Options) Picker {
	set := newWeightedSet(targets)
	if set == nil {
		return none{}
	}
	window := opts.EWMAWindow
	if window <= 0 {
		window = defaultEWMAWindow
	}
	return &peakEWMA{set: set, window: float64(window)}
}

func (p *peakEWMA) Pick(key uint64, now int64) int {
	members := p.set.members
	if len(members) == 1 {
		return int(members[0].index)
	}
	i, j := p.set.drawPair(key)
	a, b := &members[i], &members[j]
	// Ties go to the first draw, so that equal backends share in
	// proportion to their weights.
	if p.slower(a, b, now) {
		return int(b.index)
	}
	return int(a.index)
}

// slower reports whether a's score per unit of weight is above b's:
//
//	ewmaA·e^(−idleA/W)·(inA+1)/weightA > ewmaB·e^(−idleB/W)·(inB+1)/weightB
//
// which is what comparing the two Backend.DecayedEWMA readings computes,
// rearranged: the weights cross-multiplied, and both sides divided by the
// smaller decay, so that one exponential of the idle-time difference does
// the work of two. The exponential is most of the cost of a pick.
func (p *peakEWMA) slower(a, b *member, now int64) bool {
	ewmaA, inA := a.backend.EWMA(), load(a.backend)
	ewmaB, inB := b.backend.EWMA(), load(b.backend)
	switch waitA, waitB := ewmaA == 0 && inA > 0, ewmaB == 0 && inB > 0; {
	case waitA && waitB:
		return lessLoaded(inB, uint64(b.weight), inA, uint64(a.weight))
	case waitA || waitB:
		return waitA
	}
	scoreA := ewmaA * float64(inA+1) * float64(b.weight)
	scoreB := ewmaB * float64(inB+1) * float64(a.weight)
	idleA, idleB := a.backend.idle(now), b.backend.idle(now)
	switch {
	case idleA > idleB:
		scoreA *= expNeg(float64(idleA-idleB) / p.window)
	case idleB > idleA:
		scoreB *= expNeg(float64(idleB-idleA) / p.window)
	}
	return scoreA > scoreB
}
