package balancer

// weightedRandom picks each target with probability weight/sum, using the
// request's random key as the only randomness. O(1) per pick (alias table).
type weightedRandom struct {
	set *weightedSet
}

func newRandom(targets []Target, _ Options) Picker {
	set := newWeightedSet(targets)
	if set == nil {
		return none{}
	}
	return &weightedRandom{set: set}
}

func (r *weightedRandom) Pick(key uint64, _ int64) int {
	return int(r.set.members[r.set.draw(key)].index)
}
