package balancer

import "testing"

// TestLeastConnTiesBehindBusyBackend: least_conn "Ties are shared in
// proportion to weight" (README), also when the weighted draw lands on a
// busy target: with target 0 busy and 1 and 2 idle, 1 and 2 get half each.
// (Found by review: the scan took the first idle target after the busy
// one, which got twice the other's share.)
func TestLeastConnTiesBehindBusyBackend(t *testing.T) {
	targets := equalTargets(3)
	targets[0].Backend.Begin()
	p := mustBuild(t, "least_conn", targets, Options{})
	got := shares(t, p, 3, 30_000, &fakeRand{})
	t.Logf("shares = %.3f", got)
	if got[0] != 0 {
		t.Fatalf("busy target share = %.3f, want 0", got[0])
	}
	for i := 1; i <= 2; i++ {
		if got[i] < 0.45 || got[i] > 0.55 {
			t.Errorf("share of idle target %d = %.3f, want 0.5 ± 0.05 (tied idle targets of equal weight)", i, got[i])
		}
	}
}
