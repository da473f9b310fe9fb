package balancer

import (
	"math"
	"math/bits"
)

// member is one positive-weight target, laid out for the pickers that look
// at backend load: everything one draw and one comparison need sits in the
// same 32 bytes, two members to a cache line.
type member struct {
	backend *Backend
	weight  uint64
	// cut and alias are this column of the alias table: a draw landing on
	// the column keeps it when its fraction is below cut, else takes alias.
	cut   uint64
	alias uint32
	// index is the target's position in the slice the picker was built
	// from, which is what Pick returns.
	index uint32
}

// weightedSet is the positive-weight subset of a target list with a Vose
// alias table over it, so a weighted random draw is O(1): one multiply,
// one comparison and at most two loads.
type weightedSet struct {
	members []member
}

// newWeightedSet keeps the targets with a positive weight, in order. Weight
// 0 means "no new requests" (as in HAProxy), so those never appear in any
// picker. It returns nil when no target has a positive weight.
func newWeightedSet(targets []Target) *weightedSet {
	var members []member
	for i, t := range targets {
		if t.Weight == 0 || t.Backend == nil {
			continue
		}
		members = append(members, member{backend: t.Backend, weight: uint64(t.Weight), index: uint32(i)})
	}
	if len(members) == 0 {
		return nil
	}
	buildAlias(members)
	return &weightedSet{members: members}
}

// buildAlias fills in the alias table with Vose's method, in exact integer
// arithmetic: each column is scaled to weight×n against an average of the
// weight sum, so no float rounding can leave a column short or let a
// weight-0 target through. weight < 2^32 and n < 2^32 keep every product
// inside uint64.
func buildAlias(members []member) {
	n := uint64(len(members))
	var sum uint64
	for _, m := range members {
		sum += m.weight
	}
	scaled := make([]uint64, n)
	var small, large []uint32
	for i, m := range members {
		scaled[i] = m.weight * n
		members[i].cut = math.MaxUint64
		members[i].alias = uint32(i)
		if scaled[i] < sum {
			small = append(small, uint32(i))
		} else {
			large = append(large, uint32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		// The column of s keeps scaled[s]/sum of itself and hands the rest
		// to l; scaled[s] < sum, so the quotient fits in 64 bits.
		members[s].cut, _ = bits.Div64(scaled[s], 0, sum)
		members[s].alias = l
		scaled[l] -= sum - scaled[s]
		if scaled[l] < sum {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// The remaining scaled weights always sum to exactly count×sum, so
	// whatever is left is exactly full: it keeps its whole column (cut
	// stays MaxUint64, alias stays itself).
}

// draw returns a member position chosen in proportion to the weights. The
// high half of r×n picks the column and the low half, uniform and
// independent of it, is the coin.
func (w *weightedSet) draw(r uint64) uint32 {
	col, frac := bits.Mul64(r, uint64(len(w.members)))
	m := &w.members[col]
	if frac < m.cut {
		return uint32(col)
	}
	return m.alias
}

// drawPair returns two weighted draws that differ whenever there are at
// least two members. A collision is redrawn once with fresh bits; if that
// collides too (only likely when one weight dwarfs the rest) the second is
// taken uniformly from the others, which leaves the first draw — the one
// that wins ties — exactly weighted.
func (w *weightedSet) drawPair(key uint64) (uint32, uint32) {
	i := w.draw(key)
	if len(w.members) == 2 {
		return i, 1 - i // the pair is always both; only the order is drawn
	}
	r := mix64(key)
	j := w.draw(r)
	if j != i {
		return i, j
	}
	r = mix64(r)
	if j = w.draw(r); j != i {
		return i, j
	}
	// Fresh bits: r is what landed on i twice, so its high bits depend on
	// i's column of the alias table, and a step taken from them favoured
	// some of the others over the rest (found by review: equal light
	// weights beside a heavy one split 44/56).
	n := uint64(len(w.members))
	step, _ := bits.Mul64(mix64(r), n-1)
	j = uint32((uint64(i) + 1 + step) % n)
	return i, j
}

// load is a backend's in-flight count, clamped so that a transient negative
// (an End racing a rebuild) reads as idle and so that load×weight cannot
// overflow uint64.
func load(b *Backend) uint64 {
	return uint64(min(max(b.InFlight(), 0), math.MaxInt32))
}

// lessLoaded reports whether inA/weightA < inB/weightB, compared by cross
// multiplication: no division, and exact for any weight.
func lessLoaded(inA, weightA, inB, weightB uint64) bool {
	return inA*weightB < inB*weightA
}
