package balancer

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundRobinSmoothSequence(t *testing.T) {
	const cycle = "aabacaa" // nginx's order for weights 5,1,1
	tests := []struct {
		name string
		give uint64 // seed
	}{
		{name: "seed 0", give: 0},
		{name: "seed 3", give: 3},
		{name: "seed 6", give: 6},
		{name: "seed beyond cycle", give: 1<<63 + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustBuild(t, "round_robin", targetsWithWeights(5, 1, 1), Options{Seed: tt.give})
			var got strings.Builder
			for range 2 * len(cycle) {
				got.WriteByte("abc"[p.Pick(0, 0)])
			}
			// Two laps starting anywhere in the cycle: a rotation of it, twice.
			start := int(tt.give % uint64(len(cycle)))
			rotated := cycle[start:] + cycle[:start]
			if want := rotated + rotated; got.String() != want {
				t.Errorf("Pick() sequence = %q, want %q", got.String(), want)
			}
		})
	}
}

// nginxSequence is nginx's smooth weighted round robin, written the
// obvious O(targets) per step way, to check the grouped version against.
func nginxSequence(w []uint64) []uint32 {
	var total int64
	for _, x := range w {
		total += int64(x)
	}
	current := make([]int64, len(w))
	var seq []uint32
	for range total {
		best := 0
		for i, x := range w {
			current[i] += int64(x)
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, uint32(best))
	}
	return seq
}

func TestSmoothSequenceMatchesNginx(t *testing.T) {
	tests := []struct {
		name string
		give []uint64
	}{
		{name: "5,1,1", give: []uint64{5, 1, 1}},
		{name: "equal", give: []uint64{2, 2, 2, 2}},
		{name: "repeated classes", give: []uint64{3, 1, 3, 2, 1, 3, 2}},
		{name: "one", give: []uint64{9}},
	}
	rnd := &fakeRand{}
	for i := range 20 {
		w := make([]uint64, 1+rnd.next()%12)
		for j := range w {
			w[j] = 1 + rnd.next()%6
		}
		tests = append(tests, struct {
			name string
			give []uint64
		}{name: "random " + string(rune('a'+i)), give: w})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := smoothSequence(tt.give), nginxSequence(tt.give)
			if !slices.Equal(got, want) {
				t.Errorf("smoothSequence(%v) = %v, want %v", tt.give, got, want)
			}
		})
	}
}

// Weights up to 2^32-1 and a thousand distinct weights must neither blow
// the cycle up nor take long to build, and the shares must stay close.
func TestRoundRobinLargeWeights(t *testing.T) {
	distinctWeights := make([]uint32, 1024)
	for i := range distinctWeights {
		distinctWeights[i] = uint32(i*977 + 1)
	}
	tests := []struct {
		name    string
		give    []uint32
		wantTol float64 // allowed |share - weight share| / weight share, for shares >= 1/(4n)
	}{
		{name: "max and one", give: []uint32{math.MaxUint32, 1}, wantTol: 0.01},
		{name: "three huge", give: []uint32{4_000_000_000, 3_000_000_000, 1_000_000_001}, wantTol: 0.01},
		{name: "1024 distinct", give: distinctWeights, wantTol: 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			p := mustBuild(t, "round_robin", targetsWithWeights(tt.give...), Options{})
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Build() took %v, want well under a second", took)
			}
			rr := p.(*roundRobin)
			if len(rr.seq) > maxRoundRobinCycle {
				t.Errorf("cycle length = %d, want <= %d", len(rr.seq), maxRoundRobinCycle)
			}
			counts := make([]float64, len(tt.give))
			for _, i := range rr.seq {
				counts[i]++
			}
			want := weightShares(tt.give)
			for i := range want {
				if counts[i] == 0 {
					t.Errorf("target %d (weight %d) is not in the cycle, want at least once", i, tt.give[i])
				}
				got := counts[i] / float64(len(rr.seq))
				if want[i] >= 1/(4*float64(len(want))) && math.Abs(got-want[i])/want[i] > tt.wantTol {
					t.Errorf("share of target %d = %.6f, want %.6f ± %.0f%%", i, got, want[i], 100*tt.wantTol)
				}
			}
		})
	}
}

// strideReference is the stride schedule written the obvious way: each
// step, the target whose next pick is due first (lowest position on a tie).
func strideReference(w []uint64) []uint32 {
	picks := make([]uint64, len(w))
	var seq []uint32
	for range sum(w) {
		best := -1
		for a := range w {
			if picks[a] == w[a] {
				continue
			}
			if best < 0 || (2*picks[a]+1)*w[best] < (2*picks[best]+1)*w[a] {
				best = a
			}
		}
		picks[best]++
		seq = append(seq, uint32(best))
	}
	return seq
}

func TestStrideSequence(t *testing.T) {
	tests := []struct {
		name string
		give []uint64
	}{
		{name: "5,1,1", give: []uint64{5, 1, 1}},
		{name: "equal", give: []uint64{3, 3, 3}},
		{name: "one", give: []uint64{4}},
		{name: "coprime", give: []uint64{7, 5, 3, 2}},
	}
	rnd := &fakeRand{}
	for i := range 20 {
		w := make([]uint64, 1+rnd.next()%20)
		for j := range w {
			w[j] = 1 + rnd.next()%50
		}
		tests = append(tests, struct {
			name string
			give []uint64
		}{name: "random " + string(rune('a'+i)), give: w})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := strideSequence(tt.give), strideReference(tt.give)
			if !slices.Equal(got, want) {
				t.Errorf("strideSequence(%v) = %v, want %v", tt.give, got, want)
			}
			// Smooth: each pick lands within about half the number of
			// targets of its due slot, so picks of one target are never
			// more than a fair gap plus the number of targets apart.
			total := len(got)
			last := map[uint32]int{}
			for i := range 2 * total {
				a := got[i%total]
				if prev, ok := last[a]; ok {
					if gap, limit := i-prev, total/int(tt.give[a])+len(tt.give)+1; gap > limit {
						t.Fatalf("gap between picks of %d = %d, want <= %d", a, gap, limit)
					}
				}
				last[a] = i
			}
		})
	}
}

// TestRoundRobinPickRetryLeavesRotation: retries (PickRetry) between
// picks change nothing in the rotation's sequence, and land on every
// target in proportion to its weight.
func TestRoundRobinPickRetryLeavesRotation(t *testing.T) {
	targets := targetsWithWeights(3, 1)
	plain := mustBuild(t, "round_robin", targets, Options{Seed: 7})
	mixed := mustBuild(t, "round_robin", targets, Options{Seed: 7})
	hits := make([]int, len(targets))
	for i := range 400 {
		want := plain.Pick(0, 0)
		hits[PickRetry(mixed, uint64(i)*0x9e3779b97f4a7c15, 0)]++
		if got := mixed.Pick(0, 0); got != want {
			t.Fatalf("pick %d: %d after a retry, %d without", i, got, want)
		}
	}
	if hits[0] < 250 || hits[0] > 350 {
		t.Errorf("retries landed %v, want about 3:1", hits)
	}
}
