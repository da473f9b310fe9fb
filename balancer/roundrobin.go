package balancer

import "sync/atomic"

// maxRoundRobinCycle bounds the precomputed sequence; larger weight sums
// are scaled down proportionally (keeping every weight >= 1).
const maxRoundRobinCycle = 1 << 20

// roundRobin is nginx's smooth weighted round robin made lock-free: the
// whole cycle (sum of weights long) is computed once at build time, and
// Pick is a single atomic increment into it. Weights 5,1,1 give
// a a b a c a a, spreading the heavy backend instead of bursting it.
type roundRobin struct {
	seq  []uint32
	next atomic.Uint64
}

func newRoundRobin(targets []Target, opts Options) Picker {
	if len(targets) == 0 {
		return none{}
	}
	// The build costs cycle length × backends; keep it around 10^8 steps.
	limit := min(uint64(maxRoundRobinCycle), max(uint64(len(targets)), 100_000_000/uint64(len(targets))))
	weights := cycleWeights(targets, limit)
	rr := &roundRobin{seq: smoothSequence(weights)}
	// Start at a random place in the cycle so that many proxies (or many
	// rebuilds) do not all send their first request to backend 0.
	rr.next.Store(opts.Seed % uint64(len(rr.seq)))
	return rr
}

func (r *roundRobin) Pick(uint64, int64) int {
	n := r.next.Add(1) - 1
	return int(r.seq[n%uint64(len(r.seq))])
}

// cycleWeights returns the weights reduced by their greatest common divisor
// and, when their sum exceeds limit, scaled down to fit (each at least 1).
func cycleWeights(targets []Target, limit uint64) []uint64 {
	w := make([]uint64, len(targets))
	var g, sum uint64
	for i, t := range targets {
		w[i] = uint64(t.Weight)
		if w[i] == 0 {
			w[i] = 1
		}
		g = gcd(g, w[i])
	}
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > limit {
		for i := range w {
			w[i] = max(1, w[i]*(limit-uint64(len(w)))/sum)
		}
	}
	return w
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// smoothSequence runs nginx's smooth weighted round robin for one full
// cycle: each step every backend gains its weight, the highest current
// value wins and pays back the total.
func smoothSequence(weights []uint64) []uint32 {
	var total int64
	for _, w := range weights {
		total += int64(w)
	}
	current := make([]int64, len(weights))
	seq := make([]uint32, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += int64(w)
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, uint32(best))
	}
	return seq
}
