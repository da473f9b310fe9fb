package balancer

import (
	"fmt"
	"testing"
)

func TestReview22ScratchShares(t *testing.T) {
	cases := [][]uint32{{1, 2, 3, 4}, {1, 1, 100}, {1000000, 1}, {1000000, 1000000, 1}, {7}, {0, 3}, {5, 1, 1}, {16, 1, 1, 1}}
	for _, w := range cases {
		for _, alg := range algorithms {
			rnd := &fakeRand{}
			tg := targetsWithWeights(w...)
			p := mustBuild(t, alg, tg, Options{Seed: 1})
			n := 400000
			var keys func() uint64 = rnd.next
			if alg == "ring_hash" || alg == "maglev" {
				keys = func() uint64 { return HashString(fmt.Sprint(rnd.next())) }
			}
			counts := make([]int, len(w))
			for range n {
				counts[p.Pick(keys(), 0)]++
			}
			s := make([]string, len(w))
			ws := weightShares(w)
			for i := range w {
				s[i] = fmt.Sprintf("%.5f/%.5f", float64(counts[i])/float64(n), ws[i])
			}
			t.Logf("%v %s %v", w, alg, s)
		}
	}
}
