package proxy

import (
	"testing"
)

// Found by review. What was wrong: a reload that changes a pool's algorithm from ring_hash (or maglev)
// to another one cuts a backend that serves at its full weight back to
// 1/16 of it, for the rest of its slow_start window. README (Slow start):
// "With ring_hash and maglev ... a backend of weight 1 does not ramp
// there", and "A reload that turns slow_start on, or lengthens it, ramps
// no backend that already serves at full weight" (the rule session 21
// added, TestSlowStartTurnedOnKeepsServingBackend). A backend of weight 1
// (the default) that joined a ring_hash pool a minute ago serves at full
// weight at once; member.since is stamped all the same
// (control.go, reconcile), and keepRampsDone zeroed it only
// when slow_start itself grows, so the reload to round_robin hands the
// picker 1 for it against 16 for its peers (buildPool's rampScale):
// a warm backend loses 15/16 of its traffic on an unrelated reload.
// Expected: effective_weight stays 1; actual: 0.0625.
func TestAlgorithmChangeKeepsServingBackend(t *testing.T) {
	a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
	yml := func(algo string, addrs ...string) string {
		y := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: " + algo + "\n    slow_start: 1h\n"
		if algo == "ring_hash" {
			y += "    hash_key: path\n"
		}
		y += "    backends:\n"
		for _, s := range addrs {
			y += "      - {address: " + s + "}\n"
		}
		return y
	}
	px := startProxy(t, yml("ring_hash", a.addr(), b.addr()))
	apply(t, px, yml("ring_hash", a.addr(), b.addr(), c.addr())) // c joins
	if w := stateOf(t, px, c.addr()).EffectiveWeight; w != 1 {
		t.Fatalf("c under ring_hash: effective weight %v, want 1 (weight 1 does not ramp there)", w)
	}
	apply(t, px, yml("round_robin", a.addr(), b.addr(), c.addr()))
	if w := stateOf(t, px, c.addr()).EffectiveWeight; w != 1 {
		t.Errorf("c after the reload to round_robin: effective weight %v, want 1 (it served at full weight)", w)
	}
}
