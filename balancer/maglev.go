package balancer

import (
	"cmp"
	"slices"
)

// maglevSeed keys the second address hash (the skip), so that offset and
// skip are independent.
const maglevSeed = 0x6d61676c65762121

// maglev is Google's Maglev consistent hashing: a lookup table of prime
// size M in which every backend claims slots along its own permutation
// (offset + j·skip mod M, both from its address) in turns. A pick is one
// table load. Removing a backend hands its slots to the others and
// disturbs few other slots; the spread is within about n/M of perfect.
type maglev struct {
	table []uint32
}

// maglevEntry is one positive-weight backend while the table is filled.
type maglevEntry struct {
	index  uint32 // into the targets
	weight uint64
	pos    uint64 // the next slot on its permutation
	skip   uint64
}

// maglevClass is every backend of one weight: they are due in the same
// rounds, so they take their turns together, in address order.
type maglevClass struct {
	weight  uint64
	members []uint32 // entries, in address order
	turns   uint64   // turns taken so far
}

func newMaglev(targets []Target, opts Options) Picker {
	var entries []maglevEntry
	for i, t := range targets {
		if t.Weight > 0 && t.Backend != nil {
			entries = append(entries, maglevEntry{index: uint32(i), weight: uint64(t.Weight)})
		}
	}
	if len(entries) == 0 {
		return none{}
	}
	size := uint64(defaultMaglevTableSize)
	if opts.MaglevTableSize > 0 {
		size = uint64(nextPrime(max(opts.MaglevTableSize, 7)))
	}
	// Fill order must depend only on the set of backends, not on the
	// order the control plane listed them in, or two proxies (or two
	// snapshots) with the same pool would build different tables.
	slices.SortStableFunc(entries, func(a, b maglevEntry) int {
		return cmp.Compare(targets[a.index].Backend.Addr, targets[b.index].Backend.Addr)
	})
	for k := range entries {
		addr := targets[entries[k].index].Backend.Addr
		entries[k].pos = HashString(addr) % size
		entries[k].skip = hashBytes(addr, maglevSeed)%(size-1) + 1
	}
	classes := maglevClasses(entries)

	table := make([]uint32, size)
	const empty = ^uint32(0)
	for k := range table {
		table[k] = empty
	}
	// Weighted turns: a backend of weight w takes its k-th slot in round
	// ceil(k·maxWeight/w), so the heaviest take one slot every round and
	// the others proportionally fewer. A heap of weight classes on (round,
	// heavier first) replays that without walking idle rounds: O(M) for
	// equal weights, O(M + turns·log(distinct weights)) otherwise, where
	// a per-round scan of every backend would cost O(rounds·n) — ruinous
	// for one huge weight among small ones.
	maxWeight := classes[0].weight
	round := make([]uint64, len(classes))
	for c := range classes {
		round[c] = ceilDiv(maxWeight, classes[c].weight)
	}
	turns := newSchedule(round)
	filled := uint64(0)
	for filled < size {
		c := &classes[turns[0].entry]
		for _, k := range c.members {
			e := &entries[k]
			for table[e.pos] != empty {
				e.pos += e.skip
				if e.pos >= size {
					e.pos -= size
				}
			}
			table[e.pos] = e.index
			if filled++; filled == size {
				break
			}
		}
		c.turns++
		turns[0].due = ceilDiv((c.turns+1)*maxWeight, c.weight)
		turns.fixTop()
	}
	return &maglev{table: table}
}

// maglevClasses groups the entries by weight, heaviest first, keeping
// address order within each class.
func maglevClasses(entries []maglevEntry) []maglevClass {
	byWeight := map[uint64]int{}
	var classes []maglevClass
	for k, e := range entries {
		c, ok := byWeight[e.weight]
		if !ok {
			c = len(classes)
			byWeight[e.weight] = c
			classes = append(classes, maglevClass{weight: e.weight})
		}
		classes[c].members = append(classes[c].members, uint32(k))
	}
	slices.SortFunc(classes, func(a, b maglevClass) int { return cmp.Compare(b.weight, a.weight) })
	return classes
}

func (m *maglev) Pick(key uint64, _ int64) int {
	return int(m.table[key%uint64(len(m.table))])
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// nextPrime returns the smallest prime >= n. Config validation already
// insists on a prime; this only keeps a direct caller's mistake from
// breaking the permutations (a non-prime M lets a skip share a factor
// with M and cycle through a fraction of the table).
func nextPrime(n int) int {
	for ; ; n++ {
		if isPrime(n) {
			return n
		}
	}
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
