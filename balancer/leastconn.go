package balancer

// leastConn sends each request to the target with the fewest in-flight
// requests per unit of weight.
//
// It scans every target, so a pick costs O(n) atomic loads: about 2.5 to
// 3.5 ns per backend, 2.5 to 3.7 µs at 1024 busy backends, far past the
// 50 ns a pick should cost; that is the price of the exact minimum. The
// scan starts at a weighted random target drawn from the key: when that
// one is idle nothing beats it and it is taken at once, so idle targets
// share the requests in proportion to their weights at O(1). Otherwise the
// whole list is scanned, and the targets tied for the least load share
// the pick in proportion to their weights too (a weighted reservoir draw:
// stopping at the first idle target after a busy one gave that target the
// busy one's share as well). p2c gets most of the benefit at O(1); choose
// least_conn for small pools or when the exact minimum matters.
type leastConn struct {
	set *weightedSet
}

func newLeastConn(targets []Target, _ Options) Picker {
	set := newWeightedSet(targets)
	if set == nil {
		return none{}
	}
	return &leastConn{set: set}
}

func (l *leastConn) Pick(key uint64, _ int64) int {
	members := l.set.members
	start := int(l.set.draw(key))
	best := &members[start]
	bestLoad := load(best.backend)
	if bestLoad == 0 {
		return int(best.index)
	}
	tied, rnd := best.weight, key
	for k := 1; k < len(members); k++ {
		i := start + k
		if i >= len(members) {
			i -= len(members)
		}
		m := &members[i]
		in := load(m.backend)
		switch {
		case lessLoaded(in, m.weight, bestLoad, best.weight):
			best, bestLoad, tied = m, in, m.weight
		case !lessLoaded(bestLoad, best.weight, in, m.weight):
			// As loaded as the best: it takes the pick with the odds of
			// its weight among the tied so far.
			tied += m.weight
			rnd = mix64(rnd)
			if rnd%tied < m.weight {
				best, bestLoad = m, in
			}
		}
	}
	return int(best.index)
}
