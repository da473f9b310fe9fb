package balancer

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// TestWeightSharesProperty: README (Balancing algorithms):
// "Shares follow weight for every algorithm but ewma" (and ewma too with
// equal, idle backends: ties go to the first, weighted draw); weight 0
// takes nothing. Seeded random weight tables, zeros included: each
// backend's share of 200,000 picks is its weight's share within 6σ of a
// binomial draw (round_robin over whole cycles, exact; maglev over its
// whole table, within n slots; ring_hash by arc length, within the ±3%
// (1σ) README gives, 5σ here). Holds.
func TestWeightSharesProperty(t *testing.T) {
	rnd := &fakeRand{state: 23}
	for round := range 12 {
		n := 2 + int(rnd.next()%11)
		weights := make([]uint32, n)
		for i := range weights {
			weights[i] = uint32(rnd.next() % 21) // 0..20
		}
		weights[int(rnd.next()%uint64(n))] = max(weights[0], 1) // at least one positive
		want := weightShares(weights)
		for _, alg := range algorithms {
			t.Run(fmt.Sprintf("%d/%s/%v", round, alg, weights), func(t *testing.T) {
				targets := targetsWithWeights(weights...)
				p := mustBuild(t, alg, targets, Options{Seed: rnd.next()})
				got := make([]float64, n)
				tol := func(i int) float64 { return 6*math.Sqrt(want[i]*(1-want[i])/200_000) + 1e-4 }
				switch q := p.(type) {
				case *roundRobin:
					for range 3 * len(q.seq) {
						got[q.Pick(0, 0)]++
					}
					for i := range got {
						got[i] /= float64(3 * len(q.seq))
					}
					tol = func(int) float64 { return 1e-9 }
				case *maglev:
					for k := range len(q.table) {
						got[q.Pick(uint64(k), 0)]++
					}
					for i := range got {
						got[i] /= float64(len(q.table))
					}
					tol = func(int) float64 { return float64(n+1) / float64(len(q.table)) }
				case *ringHash:
					prev := q.points[len(q.points)-1].hash
					for _, pt := range q.points {
						got[pt.index] += float64(pt.hash-prev) / math.Exp2(64)
						prev = pt.hash
					}
					tol = func(i int) float64 { return 5 * 0.03 * want[i] / math.Sqrt(float64(weights[i])) }
				default:
					got = shares(t, p, n, 200_000, &fakeRand{state: uint64(round)})
				}
				for i := range want {
					if weights[i] == 0 && got[i] != 0 {
						t.Errorf("target %d of weight 0 took %.6f of picks, want none", i, got[i])
					}
					if math.Abs(got[i]-want[i]) > tol(i) {
						t.Errorf("target %d (weight %d): share %.5f, want %.5f ± %.5f", i, weights[i], got[i], want[i], tol(i))
					}
				}
				// A retry's pick follows the weights too, and never a weight-0 target.
				rs := make([]float64, n)
				r2 := &fakeRand{state: 1000 + uint64(round)}
				for range 100_000 {
					i := PickRetry(p, r2.next(), 0)
					if i < 0 || weights[i] == 0 {
						t.Fatalf("PickRetry() = %d, want a target of positive weight", i)
					}
					rs[i]++
				}
				for i := range want {
					if d := math.Abs(rs[i]/100_000 - want[i]); d > 2*tol(i)+6*math.Sqrt(want[i]*(1-want[i])/100_000) {
						t.Errorf("target %d (weight %d): retry share %.5f, want %.5f", i, weights[i], rs[i]/100_000, want[i])
					}
				}
			})
		}
	}
}

// TestHashRemovalProperty: README: with ring_hash "removing a
// backend must move only that backend's keys" (weights up to 256 units);
// maglev "a removal also moves a few other keys (measured: removing 1 of
// 10 backends moved 10% of keys)"; the same key maps to the same backend
// whatever the order of the list, and adding the backend back restores
// every key. For pools of 3 to 50 backends with seeded random weights and
// each backend removed in turn (up to 6), ring_hash strays no key;
// maglev strays at most 2% of keys beyond the removed backend's own.
// Holds.
func TestHashRemovalProperty(t *testing.T) {
	const keys = 20_000
	rnd := &fakeRand{state: 77}
	for _, n := range []int{3, 5, 17, 50} {
		weights := make([]uint32, n)
		for i := range weights {
			weights[i] = 1 + uint32(rnd.next()%4)
		}
		all := targetsWithWeights(weights...)
		for _, alg := range []string{"ring_hash", "maglev"} {
			t.Run(fmt.Sprintf("%s/n=%d", alg, n), func(t *testing.T) {
				before := mapping(t, alg, all, keys)
				rev := slices.Clone(all)
				slices.Reverse(rev)
				if got := mapping(t, alg, rev, keys); !slices.Equal(got, before) {
					t.Errorf("the pool listed in reverse maps keys differently")
				}
				for r := 0; r < n && r < 6; r++ {
					rest := slices.Delete(slices.Clone(all), r, r+1)
					after := mapping(t, alg, rest, keys)
					gone := all[r].Backend.Addr
					stray := 0
					for i := range before {
						if after[i] == gone {
							t.Fatalf("key %d maps to removed backend %s", i, gone)
						}
						if before[i] != gone && after[i] != before[i] {
							stray++
						}
					}
					limit := 0
					if alg == "maglev" {
						limit = keys * 2 / 100
					}
					if stray > limit {
						t.Errorf("removing target %d of %d moved %d keys of other backends, want <= %d", r, n, stray, limit)
					}
				}
			})
		}
	}
}
