package balancer

import (
	"fmt"
	"testing"
)

// algorithms is every registered algorithm, in a fixed order for tests.
var algorithms = []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev"}

// fakeRand is the injected randomness of a test: a splitmix64 stream, so
// every run sees the same keys.
type fakeRand struct{ state uint64 }

func (r *fakeRand) next() uint64 {
	r.state++
	return mix64(r.state)
}

// targetsWithWeights returns one target per weight, at addresses
// 10.0.<i/256>.<i%256>:8080.
func targetsWithWeights(weights ...uint32) []Target {
	targets := make([]Target, len(weights))
	for i, w := range weights {
		targets[i] = Target{Backend: NewBackend("web", addrOf(i)), Weight: w}
	}
	return targets
}

func equalTargets(n int) []Target {
	weights := make([]uint32, n)
	for i := range weights {
		weights[i] = 1
	}
	return targetsWithWeights(weights...)
}

func addrOf(i int) string { return fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256) }

func mustBuild(t testing.TB, algorithm string, targets []Target, opts Options) Picker {
	t.Helper()
	p, err := Build(algorithm, targets, opts)
	if err != nil {
		t.Fatalf("Build(%q) error = %v", algorithm, err)
	}
	return p
}

// shares picks n times with fresh random keys and returns each target's
// fraction of the picks.
func shares(t *testing.T, p Picker, targets int, n int, rnd *fakeRand) []float64 {
	t.Helper()
	counts := make([]int, targets)
	for range n {
		i := p.Pick(rnd.next(), 0)
		if i < 0 || i >= targets {
			t.Fatalf("Pick() = %d, want an index in [0, %d)", i, targets)
		}
		counts[i]++
	}
	out := make([]float64, targets)
	for i, c := range counts {
		out[i] = float64(c) / float64(n)
	}
	return out
}

func weightShares(weights []uint32) []float64 {
	var sum float64
	for _, w := range weights {
		sum += float64(w)
	}
	out := make([]float64, len(weights))
	for i, w := range weights {
		out[i] = float64(w) / sum
	}
	return out
}
