package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// r24BalShareErr is the worst relative error of a target's share
// (counts over total) against its weight's share, over the targets whose
// weight share is above a quarter of the average (README, Balancing
// algorithms, Weights), and the target it is at.
func r24BalShareErr(weights []uint32, counts []float64, total float64) (float64, int) {
	want := weightShares(weights)
	worst, at := 0.0, -1
	for i := range want {
		if want[i] > 1/(4*float64(len(weights))) {
			if e := math.Abs(counts[i]/total-want[i]) / want[i]; e > worst {
				worst, at = e, i
			}
		}
	}
	return worst, at
}

// TestBalRoundRobinQuarterShareWithin2Pct: README (Balancing
// algorithms, Weights): scaling large weight sums "keeps every share above
// a quarter of the average within 2% of its weight (tested; measured in
// session 23, this holds up to about 3,000 backends ...)". A pool of 512
// backends (weights within the config's 0..1,000,000) takes the stride
// schedule; the backend just above a quarter of the average share gets
// 2.28% less than its weight over a whole cycle. Fails.
func TestBalRoundRobinQuarterShareWithin2Pct(t *testing.T) {
	const n = 512
	weights := make([]uint32, n)
	weights[0] = 22618 // just above a quarter of the average share
	for i := 1; i < n; i++ {
		if i <= n*9/10 {
			weights[i] = 1 // light backends, each rounded up to one turn
		} else {
			weights[i] = 400_000 + uint32(i)*1000
		}
	}
	rr := mustBuild(t, "round_robin", targetsWithWeights(weights...), Options{}).(*roundRobin)
	counts := make([]float64, n)
	for _, i := range rr.seq {
		counts[i]++
	}
	worst, at := r24BalShareErr(weights, counts, float64(len(rr.seq)))
	if worst > 0.02 {
		t.Errorf("target %d (weight %d): %v turns of a %d-turn cycle, share off its weight's by %.2f%%, want within 2%%",
			at, weights[at], counts[at], len(rr.seq), 100*worst)
	}
}

// TestBalRingPointsQuarterShareWithin2Pct: the same README
// sentence names ring_hash's scaling ("rings over 2^18 points"). The ring's
// random arcs vary on their own (±3%/±6% 1σ, README), so this checks what
// the scaling decides: each backend's number of points. 1000 backends,
// total weight just over 2^20 units: the ring is scaled by 2^13 and a
// backend's points are weight×1024>>13, truncated; the backend of weight
// 263 (share 2.508e-4, just above a quarter of the average, 2.5e-4) gets
// 32 points of 131072 instead of 32.9: 2.66% short. Fails.
func TestBalRingPointsQuarterShareWithin2Pct(t *testing.T) {
	weights := []uint32{263}
	for i := range 999 {
		if i < 171 {
			weights = append(weights, 1056)
		} else {
			weights = append(weights, 1048)
		}
	}
	r := mustBuild(t, "ring_hash", targetsWithWeights(weights...), Options{}).(*ringHash)
	counts := make([]float64, len(weights))
	for _, p := range r.points {
		counts[p.index]++
	}
	worst, at := r24BalShareErr(weights, counts, float64(len(r.points)))
	if worst > 0.02 {
		t.Errorf("target %d (weight %d): %v points of %d, share off its weight's by %.2f%%, want within 2%%",
			at, weights[at], counts[at], len(r.points), 100*worst)
	}
}

// TestBalHashAddOneMovesOnlyItsKeys: README (Consistency):
// with ring_hash, a backend joining moves only the keys it takes (total
// weight up to 256 units); maglev moves "a few other keys". For pools of
// 2 to 255 equal backends plus one, and a weighted pool, ring_hash moves
// no key between the backends that were there, and the keys that move
// are about 1/(n+1) of them; maglev strays at most 2% of keys. Holds.
func TestBalHashAddOneMovesOnlyItsKeys(t *testing.T) {
	const keys = 100_000
	pools := [][]uint32{{1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {5, 1, 3, 2, 7, 1}}
	eq := make([]uint32, 255)
	for i := range eq {
		eq[i] = 1
	}
	pools = append(pools, eq)
	for _, weights := range pools {
		all := targetsWithWeights(append(slices.Clone(weights), 1)...)
		n := len(weights)
		for _, alg := range []string{"ring_hash", "maglev"} {
			t.Run(fmt.Sprintf("%s/n=%d", alg, n), func(t *testing.T) {
				before := mapping(t, alg, all[:n], keys)
				after := mapping(t, alg, all, keys)
				joined := all[n].Backend.Addr
				moved, stray := 0, 0
				for i := range before {
					if before[i] != after[i] {
						moved++
						if after[i] != joined {
							stray++
						}
					}
				}
				var sum float64
				for _, w := range weights {
					sum += float64(w)
				}
				ideal := 1 / (sum + 1)
				got := float64(moved) / keys
				t.Logf("moved %.4f of keys (ideal %.4f), %d between old backends", got, ideal, stray)
				limit := 0
				if alg == "maglev" {
					limit = keys * 2 / 100
				}
				if stray > limit {
					t.Errorf("adding a backend moved %d keys between backends that were there, want <= %d", stray, limit)
				}
				if alg == "ring_hash" && math.Abs(got-ideal) > 0.35*ideal+0.005 {
					t.Errorf("adding a backend moved %.4f of keys, want about %.4f", got, ideal)
				}
			})
		}
	}
}

// TestBalHashStableAcrossRebuilds: README (Consistency): "The
// hash pickers depend only on backend addresses and weights, never on the
// order backends are listed in or on the process". 1000 backends with
// seeded random weights, listed in 3 random orders and built with
// different seeds (a snapshot rebuild), map 50,000 keys identically.
// Holds.
func TestBalHashStableAcrossRebuilds(t *testing.T) {
	rnd := rand.New(rand.NewPCG(24, 1))
	weights := make([]uint32, 1000)
	for i := range weights {
		weights[i] = 1 + uint32(rnd.IntN(5))
	}
	all := targetsWithWeights(weights...)
	for _, alg := range []string{"ring_hash", "maglev"} {
		want := mapping(t, alg, all, 50_000)
		for trial := range 3 {
			perm := slices.Clone(all)
			rnd.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			p := mustBuild(t, alg, perm, Options{Seed: rnd.Uint64()})
			for i := range want {
				if got := perm[p.Pick(mix64(uint64(i)), 0)].Backend.Addr; got != want[i] {
					t.Fatalf("%s, order %d: key %d maps to %s, want %s as in the listed order", alg, trial, i, got, want[i])
				}
			}
		}
	}
}

// TestBalInFlightChurn: README (Balancing algorithms): least_conn,
// p2c and ewma read in-flight counts that requests move up and down
// concurrently, while rebuilds publish new pickers over the same
// backends. 8 goroutines pick, Begin, observe a latency and End, 20,000
// times each; every pick is a positive-weight target, every backend takes
// some requests (none stuck out) and every count is 0 afterwards.
// Holds.
func TestBalInFlightChurn(t *testing.T) {
	for _, alg := range []string{"least_conn", "p2c", "ewma"} {
		t.Run(alg, func(t *testing.T) {
			weights := []uint32{3, 0, 1, 1, 5, 2}
			targets := targetsWithWeights(weights...)
			var cur atomic.Pointer[Picker]
			build := func(seed uint64) {
				p := mustBuild(t, alg, targets, Options{Seed: seed, EWMAWindow: time.Second})
				cur.Store(&p)
			}
			build(1)
			hits := make([]atomic.Int64, len(targets))
			var bad atomic.Int64
			stop := make(chan struct{})
			var rebuilds sync.WaitGroup
			rebuilds.Go(func() {
				for s := uint64(2); ; s++ {
					select {
					case <-stop:
						return
					default:
						build(s)
					}
				}
			})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					rnd := &fakeRand{state: uint64(g) << 40}
					now := int64(1e12)
					for k := range 20_000 {
						now += 1000
						i := (*cur.Load()).Pick(rnd.next(), now)
						if i < 0 || weights[i] == 0 {
							bad.Add(1)
							continue
						}
						b := targets[i].Backend
						b.Begin()
						hits[i].Add(1)
						if b.InFlight() <= 0 {
							bad.Add(1)
						}
						b.ObserveLatency(now, int64(1+k%7+i)*int64(time.Millisecond), int64(time.Second))
						b.End()
					}
				})
			}
			wg.Wait()
			close(stop)
			rebuilds.Wait()
			if bad.Load() != 0 {
				t.Errorf("%d picks returned no target, a weight-0 target, or saw a non-positive count after Begin", bad.Load())
			}
			for i, tg := range targets {
				if n := tg.Backend.InFlight(); n != 0 {
					t.Errorf("target %d in flight = %d after every request ended, want 0", i, n)
				}
				if weights[i] > 0 && hits[i].Load() == 0 {
					t.Errorf("target %d (weight %d) took no request of %d", i, weights[i], 8*20_000)
				}
			}
		})
	}
}

// TestBalDegenerate: README: "a pool whose ready backends all have
// weight 0 has no backend to pick"; one backend takes everything; equal
// (duplicate) weights share exactly under round_robin and within
// sampling error elsewhere; Pick and PickRetry allocate nothing, also on
// the empty picker and on one backend. Holds.
func TestBalDegenerate(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			zero := targetsWithWeights(0, 0, 0)
			p := mustBuild(t, alg, zero, Options{})
			for k := range uint64(100) {
				if i := p.Pick(mix64(k), 0); i != -1 {
					t.Fatalf("all weights 0: Pick() = %d, want -1", i)
				}
				if i := PickRetry(p, mix64(k), 0); i != -1 {
					t.Fatalf("all weights 0: PickRetry() = %d, want -1", i)
				}
			}
			one := targetsWithWeights(0, 7, 0)
			p = mustBuild(t, alg, one, Options{})
			for k := range uint64(1000) {
				if i := p.Pick(mix64(k), 0); i != 1 {
					t.Fatalf("one positive weight: Pick() = %d, want 1", i)
				}
			}
			if got := testing.AllocsPerRun(200, func() { PickRetry(p, 12345, 0) }); got != 0 {
				t.Errorf("AllocsPerRun(PickRetry) = %v, want 0", got)
			}
			dup := targetsWithWeights(4, 4, 4, 4, 2, 2)
			p = mustBuild(t, alg, dup, Options{Seed: 3})
			got := shares(t, p, len(dup), 120_000, &fakeRand{state: 5})
			want := weightShares([]uint32{4, 4, 4, 4, 2, 2})
			tol := 0.01
			switch alg {
			case "round_robin":
				tol = 1e-9
			case "ring_hash":
				tol = 0.03
			}
			for i := range want {
				if math.Abs(got[i]-want[i]) > tol {
					t.Errorf("share of target %d = %.4f, want %.4f ± %g", i, got[i], want[i], tol)
				}
			}
		})
	}
}
