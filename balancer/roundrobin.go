package balancer

import (
	"slices"
	"sync/atomic"
)

const (
	// maxRoundRobinCycle bounds the precomputed sequence (4 MiB of uint32).
	// Larger weight sums are scaled down to it: 1 part in a million.
	maxRoundRobinCycle = 1 << 20
	// maxRoundRobinWork bounds the exact nginx build, cycle length ×
	// distinct weights steps, to ~20 ms. Pools past it (hundreds of
	// distinct weights) use the stride schedule instead, which is as
	// smooth, not step-for-step nginx's, and O(cycle) to build.
	maxRoundRobinWork = 1 << 24
	// strideCyclePerTarget sizes the stride cycle: long enough that
	// rounding the weights into it moves a share by well under 1%, short
	// enough to build in a few milliseconds. (At 128 a backend at a
	// quarter of the average weight had about 32 turns, and rounding
	// alone could cost it 1.5%: 2.3% short in all, found by review.)
	strideCyclePerTarget = 256
)

// roundRobin is smooth weighted round robin made lock-free: the whole
// cycle is computed once at build time, and Pick is a single atomic
// increment into it. The cycle is nginx's (weights 5,1,1 give
// a a b a c a a, spreading the heavy backend instead of bursting it),
// except for pools with hundreds of distinct weights, see
// maxRoundRobinWork.
type roundRobin struct {
	seq  []uint32
	next atomic.Uint64
}

func newRoundRobin(targets []Target, opts Options) Picker {
	var index []uint32
	var weights []uint64
	for i, t := range targets {
		if t.Weight > 0 && t.Backend != nil {
			index = append(index, uint32(i))
			weights = append(weights, uint64(t.Weight))
		}
	}
	if len(index) == 0 {
		return none{}
	}
	weights = scaleWeights(reduceByGCD(weights), maxRoundRobinCycle)
	var seq []uint32
	if sum(weights)*distinct(weights) <= maxRoundRobinWork {
		seq = smoothSequence(weights)
	} else {
		n := uint64(len(weights))
		cycle := min(maxRoundRobinCycle, max(1<<16, strideCyclePerTarget*n))
		seq = strideSequence(scaleWeights(weights, cycle))
	}
	for i, pos := range seq {
		seq[i] = index[pos]
	}
	rr := &roundRobin{seq: seq}
	// Start at a random place in the cycle so that many proxies (or many
	// rebuilds) do not all send their first request to the same backend.
	rr.next.Store(opts.Seed % uint64(len(seq)))
	return rr
}

func (r *roundRobin) Pick(uint64, int64) int {
	n := r.next.Add(1) - 1
	return int(r.seq[n%uint64(len(r.seq))])
}

// PickRetry takes the place in the weighted sequence that key (random)
// names, leaving the rotation where it is: a weighted random choice.
func (r *roundRobin) PickRetry(key uint64, _ int64) int {
	return int(r.seq[key%uint64(len(r.seq))])
}

// scaleWeights scales positive weights down so that they sum to at most
// limit (or to their count, if that is more), rounding to nearest and
// keeping each at least 1: Σ max(1, round(x·(limit−n)/sum)) <= limit.
// Scaling merges weights, never splits them, so the number of distinct
// weights cannot grow. x < 2^32 and limit <= 2^20 keep x·room in uint64.
func scaleWeights(w []uint64, limit uint64) []uint64 {
	n := uint64(len(w))
	total := sum(w)
	if total <= max(limit, n) {
		return w
	}
	room := max(limit, n) - n
	for i, x := range w {
		w[i] = max(1, (x*room+total/2)/total)
	}
	return reduceByGCD(w)
}

func sum(w []uint64) uint64 {
	var s uint64
	for _, x := range w {
		s += x
	}
	return s
}

func reduceByGCD(w []uint64) []uint64 {
	var g uint64
	for _, x := range w {
		g = gcd(g, x)
	}
	for i := range w {
		w[i] /= g
	}
	return w
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func distinct(w []uint64) uint64 {
	s := slices.Clone(w)
	slices.Sort(s)
	return uint64(len(slices.Compact(s)))
}

// strideSequence spreads each target's picks evenly over the cycle: the
// k-th pick (from 0) of a target of weight w is due at (k+½)/w of the
// way through, and picks go out in due order, lowest position on a tie.
// Returns positions into w.
//
// There are as many picks as slots in the cycle and the due times are
// spread evenly, so a counting sort on the slot each falls in, with a
// short insertion sort inside each slot, orders them in O(cycle).
func strideSequence(w []uint64) []uint32 {
	total := sum(w)
	// slot is floor(due·total) < total. Weights scaled to <= 2^20 keep
	// (2k+1)·total and (2k+1)·w below 2^42.
	slot := func(k, x uint64) uint64 { return (2*k + 1) * total / (2 * x) }
	start := make([]uint32, total+1)
	for _, x := range w {
		for k := range x {
			start[slot(k, x)+1]++
		}
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	type pick struct{ pos, k uint32 }
	picks := make([]pick, total)
	next := slices.Clone(start[:total])
	for pos, x := range w {
		for k := range x {
			s := slot(k, x)
			picks[next[s]] = pick{pos: uint32(pos), k: uint32(k)}
			next[s]++
		}
	}
	// a is due before b: (2ka+1)/(2wa) < (2kb+1)/(2wb), cross-multiplied.
	before := func(a, b pick) bool {
		l := (2*uint64(a.k) + 1) * w[b.pos]
		r := (2*uint64(b.k) + 1) * w[a.pos]
		return l < r || (l == r && a.pos < b.pos)
	}
	for s := range total {
		bucket := picks[start[s]:start[s+1]]
		for i := 1; i < len(bucket); i++ {
			for j := i; j > 0 && before(bucket[j], bucket[j-1]); j-- {
				bucket[j], bucket[j-1] = bucket[j-1], bucket[j]
			}
		}
	}
	seq := make([]uint32, total)
	for i, p := range picks {
		seq[i] = p.pos
	}
	return seq
}

// smoothSequence runs nginx's smooth weighted round robin for one full
// cycle: each step every target gains its weight, the highest current
// value wins (lowest position on a tie) and pays back the total. Returns
// positions into w.
//
// After t steps a target's value is t·weight − total·picks. Targets that
// share a weight are interchangeable except for order: the one picked
// least often (lowest position on a tie) is always the best of them, so
// each weight class hands out its members in rotation and only the front
// of each class competes. A step is O(distinct weights), not O(targets).
func smoothSequence(w []uint64) []uint32 {
	var total int64
	byWeight := map[uint64]int{}
	// One class per distinct weight, as parallel slices so the scan over
	// classes in every step stays in a few cache lines.
	var weight, rounds []int64 // rounds: times every member has been picked
	var front []uint32         // the position whose turn it is
	var members [][]uint32     // positions, ascending
	var next []int             // index of front in members
	for pos, x := range w {
		total += int64(x)
		c, ok := byWeight[x]
		if !ok {
			c = len(weight)
			byWeight[x] = c
			weight = append(weight, int64(x))
			rounds = append(rounds, 0)
			front = append(front, uint32(pos))
			members = append(members, nil)
			next = append(next, 0)
		}
		members[c] = append(members[c], uint32(pos))
	}
	seq := make([]uint32, 0, total)
	for t := int64(1); t <= total; t++ {
		best := 0
		bestValue := t*weight[0] - total*rounds[0]
		for c := 1; c < len(weight); c++ {
			v := t*weight[c] - total*rounds[c]
			if v > bestValue || (v == bestValue && front[c] < front[best]) {
				best, bestValue = c, v
			}
		}
		seq = append(seq, front[best])
		if next[best]++; next[best] == len(members[best]) {
			next[best] = 0
			rounds[best]++
		}
		front[best] = members[best][next[best]]
	}
	return seq
}
