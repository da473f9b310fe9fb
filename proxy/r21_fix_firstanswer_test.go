package proxy

import (
	"context"
	"testing"
	"time"

	"sluice/config"
)

// Found by review. What was wrong: the first DNS answer of a pool that a reload adds (or whose
// discovery it changes) ramps beside the pool's listed backends when the
// reload's own lookup of it failed, though it joins at full weight at
// start and when that lookup succeeds. README (Slow start): "The backends
// a pool starts with (at start, or a pool new to the config, or the first
// DNS answer, also beside backends listed in the file) take their full
// weight at once"; README (Service discovery): "If that lookup fails, the
// pool starts empty, as at start". cmd/sluice seeds such a pool with nil
// when its lookup fails (discovery.go seedsFor: "out[pool] = nil"), and
// ApplySeeded (control.go:234-237) counts any seed, nil included, as the
// answer: "ps.firstAnswer, ps.answered = !ps.answered, true". The
// watcher's first real answer then comes through SetDiscovered with
// answered already true, so firstAnswer is false and reconcile stamps
// since (control.go:368) on every backend of it: with slow_start: 1h they
// sit at 1/16 of their weight beside the listed backend at full weight,
// the bent shares the rule exists to prevent, for the whole window.
// Expected: effective weight 1 (as at start, and as with a seed that
// succeeded, the second case, which passes); actual: 0.06.
func TestFirstAnswerAfterFailedSeedFullWeight(t *testing.T) {
	for _, tt := range []struct {
		name       string
		seedFailed bool
	}{
		{"seed lookup failed", true},
		{"seed lookup succeeded", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
			q := startBackend(t, "q", nil)
			px := startProxy(t, "routes: [{pool: q}]\npools:\n  q:\n    backends: [{address: "+q.addr()+"}]\n")
			dns := config.DNSDiscovery{Name: "svc.test.", Port: 80, Type: "A", Interval: 10 * time.Second}
			// A reload adds pool p: one listed backend, the rest from DNS.
			cfg := mustParse(t, "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    slow_start: 1h\n"+
				"    discovery: {dns: {name: svc.test., port: 80, type: A, interval: 10s}}\n"+
				"    backends:\n      - {address: "+a.addr()+"}\n")
			found := []DiscoveredBackend{{Address: b.addr(), Weight: 1}, {Address: c.addr(), Weight: 1}}
			seed := found
			if tt.seedFailed {
				seed = nil // what seedsFor hands over for a failed lookup
			}
			if err := px.ctrl.ApplySeeded(context.Background(), cfg, map[string][]DiscoveredBackend{"p": seed}); err != nil {
				t.Fatal(err)
			}
			if tt.seedFailed {
				// The watcher's first lookup answers.
				if err := px.ctrl.SetDiscovered(context.Background(), "p", dns, found); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range found {
				if w := stateOf(t, px, d.Address).EffectiveWeight; w != 1 {
					t.Errorf("backend %s of pool p's first DNS answer: effective weight %v, want 1 (full weight, as at start)", d.Address, w)
				}
			}
		})
	}
}

// Found by review. What was wrong: a reload that changes only a DNS pool's interval makes the next
// answer count as the pool's first, so a backend that joins with it takes
// its full weight at once instead of ramping, while the pool's other
// backends carry the traffic. ApplySeeded (control.go:231-233) resets
// answered whenever the discovery differs in any field ("if
// *pc.Discovery.DNS != ps.dnsFrom"), interval included; cmd/sluice
// restarts the watcher for a new interval but seeds nothing (discovery.go
// needSeeds/sameLookup: the same lookup keeps its backends), so the new
// watcher's first answer arrives through SetDiscovered with firstAnswer
// true, and reconcile (control.go:368) leaves since unset for its new
// backends. README (Slow start): "a backend that is added ... ramps its
// weight linearly from 10% to its full weight over the window"; the
// "first DNS answer" rule is for the backends a pool starts with, and
// this pool started long ago. Expected: the joining backend ramps
// (effective weight in (0, 1)), as it does without the reload; actual: 1.
func TestIntervalReloadKeepsSlowStart(t *testing.T) {
	b, c := startBackend(t, "b", nil), startBackend(t, "c", nil)
	yml := func(interval string) string {
		return "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    slow_start: 1h\n" +
			"    discovery: {dns: {name: svc.test., port: 80, type: A, interval: " + interval + "}}\n"
	}
	px := startProxy(t, yml("10s"))
	discoverer(t, px, config.DNSDiscovery{Name: "svc.test.", Port: 80, Type: "A", Interval: 10 * time.Second})(b.addr())
	if w := stateOf(t, px, b.addr()).EffectiveWeight; w != 1 {
		t.Fatalf("first answer's %s: effective weight %v, want 1", b.addr(), w)
	}
	apply(t, px, yml("20s")) // only the interval changes: no seed, a new watcher
	discoverer(t, px, config.DNSDiscovery{Name: "svc.test.", Port: 80, Type: "A", Interval: 20 * time.Second})(b.addr(), c.addr())
	if w := stateOf(t, px, c.addr()).EffectiveWeight; w <= 0 || w >= 1 {
		t.Errorf("backend %s joining a serving DNS pool after an interval-only reload: effective weight %v, "+
			"want in (0, 1) (slow start)", c.addr(), w)
	}
}
