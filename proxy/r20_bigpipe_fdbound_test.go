package proxy

import "testing"

// Found by review. What was wrong: the big pipes' bound was added on top of the small pipes'
// instead of sharing the descriptor budget (README, Design: "at most a
// sixteenth of the descriptor limit"): with RLIMIT_NOFILE 1024, 64 pipes
// of 128 KiB and 32 of 1 MiB, 96 in all where 64 were promised.
// Found by review in session 20.
func TestPipeBudgetShared(t *testing.T) {
	for _, budget := range []int64{0, 1, 2, 3, 63, 64, 65, 256, 1023, 1024} {
		small, big := splitPipes(budget)
		if small+big != budget || small < 0 || big < 0 || big > maxBigPipes || big > budget/2 {
			t.Errorf("splitPipes(%d) = %d small, %d big; want them to share the budget, big at most half and %d", budget, small, big, maxBigPipes)
		}
	}
	p := New()
	small, big := splitPipes(maxPipes())
	if p.pipes.max.Load() != small || p.bigPipes.max.Load() != big || p.pipes.off.Load() != (small == 0) || p.bigPipes.off.Load() != (big == 0) {
		t.Fatalf("New() bounds %d small (off %v), %d big (off %v); want splitPipes(maxPipes()) = %d, %d",
			p.pipes.max.Load(), p.pipes.off.Load(), p.bigPipes.max.Load(), p.bigPipes.off.Load(), small, big)
	}
}
