package balancer

import (
	"math/bits"
	"strings"
)

const (
	// ringPointsPerWeight is the number of virtual nodes per unit of
	// weight. A backend's share of the ring varies by about
	// 1/sqrt(points) (the arcs are random), so 160 points — ketama's
	// number — leaves ±8% per backend; 1024 brings it to about ±3%, which
	// the ±10% spread promise for small pools needs.
	ringPointsPerWeight = 1024
	// maxRingPoints bounds the ring at 4 MiB of points plus 1 MiB of
	// bucket index, where 1024 backends still get 256 points each. Rings
	// of 1<<20 points measured twice the pick time at 1024 backends (the
	// ring leaves the cache) and ten times the build time. Larger weight
	// sums (above 256 with weight-1 units) are scaled down by a power of
	// two, see newRingHash.
	maxRingPoints = 1 << 18
)

// ringPoint is one virtual node: a position on the ring and the target
// that owns the arc ending at it.
type ringPoint struct {
	hash  uint64
	index uint32
}

// ringHash is a ketama-style consistent-hash ring. A key goes to the owner
// of the first point at or after it (wrapping around). Points come only
// from backend addresses and weights, so removing a backend moves only the
// keys it owned, and adding it back restores them exactly.
//
// A binary search over a quarter million points would take ~18 dependent
// cache misses; instead the points are bucketed by their top bits, with
// about one point per bucket, so a pick is one bucket lookup and a short
// scan.
type ringHash struct {
	points []ringPoint
	// start[b] is the first point whose top bits are >= b; it has one
	// entry per bucket plus a sentinel equal to len(points).
	start []uint32
	shift uint
}

func newRingHash(targets []Target, _ Options) Picker {
	var total uint64
	for _, t := range targets {
		if t.Weight > 0 && t.Backend != nil {
			total += uint64(t.Weight) * ringPointsPerWeight
		}
	}
	if total == 0 {
		return none{}
	}
	// Each backend's points depend only on its own address and weight, not
	// on the rest of the pool — that is what keeps the other backends'
	// keys in place when one leaves. Scaling by a power of two keeps that
	// true except when a change crosses a power-of-two threshold; then
	// every backend keeps the first part of its own points, and only
	// keys on the dropped points move.
	scale := uint(0)
	for total>>scale > maxRingPoints {
		scale++
	}
	r := &ringHash{}
	r.place(targets, scale)
	return r
}

// vnodes is how many points a target gets at the given scale: its share
// rounded to nearest (truncated, a backend at a quarter of the average
// weight in a ring scaled to about 2^17 points lost 2.7% of its share;
// found by review), and at least 1.
func vnodes(t Target, scale uint) uint64 {
	if t.Weight == 0 || t.Backend == nil {
		return 0
	}
	half := uint64(1) << scale >> 1 // 0 at scale 0
	return max(1, (uint64(t.Weight)*ringPointsPerWeight+half)>>scale)
}

// ringPointHash places the v-th virtual node of the backend whose address
// hashes to base.
func ringPointHash(base, v uint64) uint64 {
	return mix64(base ^ mix64(v))
}

// place computes the points twice — hashing is cheaper than moving a ring
// of up to 16 MiB around — first to count them per bucket of top bits,
// then to drop each straight into its bucket: a counting sort, O(points)
// because positions are uniform, that also yields the bucket index. Points
// within a bucket (about one) are then insertion-sorted, ties (two
// backends with one address) broken by address and then target index.
func (r *ringHash) place(targets []Target, scale uint) {
	var total uint64
	for _, t := range targets {
		total += vnodes(t, scale)
	}
	bucketBits := uint(bits.Len64(total - 1))
	r.shift = 64 - bucketBits // 64 when there is one point: key>>64 == 0
	start := make([]uint32, 1<<bucketBits+1)
	for _, t := range targets {
		if n := vnodes(t, scale); n > 0 {
			base := HashString(t.Backend.Addr)
			for v := range n {
				start[ringPointHash(base, v)>>r.shift+1]++
			}
		}
	}
	for b := 1; b < len(start); b++ {
		start[b] += start[b-1]
	}
	points := make([]ringPoint, total)
	next := make([]uint32, len(start)-1)
	copy(next, start)
	for i, t := range targets {
		if n := vnodes(t, scale); n > 0 {
			base := HashString(t.Backend.Addr)
			for v := range n {
				h := ringPointHash(base, v)
				b := h >> r.shift
				points[next[b]] = ringPoint{hash: h, index: uint32(i)}
				next[b]++
			}
		}
	}
	for b := 0; b+1 < len(start); b++ {
		bucket := points[start[b]:start[b+1]]
		for i := 1; i < len(bucket); i++ {
			for j := i; j > 0 && ringLess(bucket[j], bucket[j-1], targets); j-- {
				bucket[j], bucket[j-1] = bucket[j-1], bucket[j]
			}
		}
	}
	r.points, r.start = points, start
}

func ringLess(a, b ringPoint, targets []Target) bool {
	if a.hash != b.hash {
		return a.hash < b.hash
	}
	if c := strings.Compare(targets[a.index].Backend.Addr, targets[b.index].Backend.Addr); c != 0 {
		return c < 0
	}
	return a.index < b.index
}

func (r *ringHash) Pick(key uint64, _ int64) int {
	b := key >> r.shift
	lo, hi := r.start[b], r.start[b+1]
	for i := lo; i < hi; i++ {
		if r.points[i].hash >= key {
			return int(r.points[i].index)
		}
	}
	// No point at or after key in its own bucket: the next point is the
	// first of the following buckets, or the ring wraps to the start.
	if int(hi) == len(r.points) {
		hi = 0
	}
	return int(r.points[hi].index)
}
