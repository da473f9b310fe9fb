package balancer

// powerOfTwo is Envoy's LEAST_REQUEST: draw two distinct targets in
// proportion to their weights and send the request to the one with fewer
// in-flight requests per unit of weight. O(1) per pick, and it avoids the
// herd that pure least-connections sends to one freshly idle backend.
// Ties go to the first draw, so with equal load the shares are exactly the
// weights.
type powerOfTwo struct {
	set *weightedSet
}

func newP2C(targets []Target, _ Options) Picker {
	set := newWeightedSet(targets)
	if set == nil {
		return none{}
	}
	return &powerOfTwo{set: set}
}

func (p *powerOfTwo) Pick(key uint64, _ int64) int {
	members := p.set.members
	if len(members) == 1 {
		return int(members[0].index)
	}
	i, j := p.set.drawPair(key)
	a, b := &members[i], &members[j]
	if lessLoaded(load(b.backend), b.weight, load(a.backend), a.weight) {
		return int(b.index)
	}
	return int(a.index)
}
