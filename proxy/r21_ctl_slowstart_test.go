package proxy

import (
	"testing"
	"time"

	"sluice/config"
)

// Found by review. What was wrong: README (Slow start and panic mode): "The backends a pool starts
// with (at start, or a pool new to the config, or the first DNS answer)
// take their full weight at once, as in HAProxy: ramping them all together
// would only bend their shares." A pool may list backends and discover
// more (README, Service discovery: "a pool that has both serves the listed
// backends and the discovered ones together"). At start cmd/sluice applies
// the file (Controller.Apply: the static backends become members), then
// each watcher's first lookup arrives through SetDiscovered, and only then
// opens its listeners (waitFirst). reconcile's "had" rule sees the static
// members and gives every backend of that first DNS answer slow start, so
// when traffic begins the static backend of weight 1 takes 64% of it
// beside 9 discovered backends of weight 1 (16 against 9×1 in the
// picker's ×16 units) instead of 10%, and more than its share for the
// whole slow_start window, on every restart: the shares are
// bent, which is what the rule exists to prevent. Expected: the first DNS
// answer's backends at full weight (effective_weight 1), as in a DNS-only
// pool; actual: 1/16 of it.
func TestFirstDNSAnswerBesideStaticFullWeight(t *testing.T) {
	a := startBackend(t, "a", nil)
	dns := config.DNSDiscovery{Name: "svc.test", Port: 80, Type: "A", Interval: 10 * time.Second}
	px := startProxy(t, "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    slow_start: 1h\n"+
		"    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n"+
		"    backends:\n      - {address: "+a.addr()+"}\n")
	// The first lookup's answer, as the watcher hands it over at start.
	var found []string
	for range 9 {
		found = append(found, startBackend(t, "d", nil).addr())
	}
	discoverer(t, px, dns)(found...)
	for _, addr := range found {
		if w := stateOf(t, px, addr).EffectiveWeight; w != 1 {
			t.Errorf("backend %s of the pool's first DNS answer: effective weight %v, want 1 (full weight at start)", addr, w)
		}
	}
	// What the picker was given: the static backend's share of the weight.
	pl := px.proxy.Current().pools["p"]
	var static, total uint32
	for i, tg := range pl.built {
		total += tg.Weight
		if pl.targets[i].backend.Addr == a.addr() {
			static = tg.Weight
		}
	}
	if share := float64(static) / float64(total); share > 0.15 {
		t.Errorf("static backend's share of the weights = %.0f%%, want 10%% (1 of 10 backends of weight 1)", share*100)
	}
}

// TestDNSOnlyFirstAnswerFullWeight: the DNS-only counterpart of
// the test above, which passes: the first answer of a pool without
// listed backends takes its full weight, and a later answer's new backend
// ramps.
func TestDNSOnlyFirstAnswerFullWeight(t *testing.T) {
	dns := config.DNSDiscovery{Name: "svc.test", Port: 80, Type: "A", Interval: 10 * time.Second}
	px := startProxy(t, "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    slow_start: 1h\n"+
		"    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n")
	b, c, d := startBackend(t, "b", nil), startBackend(t, "c", nil), startBackend(t, "d", nil)
	set := discoverer(t, px, dns)
	set(b.addr(), c.addr())
	for _, addr := range []string{b.addr(), c.addr()} {
		if w := stateOf(t, px, addr).EffectiveWeight; w != 1 {
			t.Errorf("first answer's %s: effective weight %v, want 1", addr, w)
		}
	}
	set(b.addr(), c.addr(), d.addr())
	if w := stateOf(t, px, d.addr()).EffectiveWeight; w >= 1 || w <= 0 {
		t.Errorf("backend joining with a later answer: effective weight %v, want in (0, 1) (slow start)", w)
	}
}

// Found by review. What was wrong: a reload that turns slow_start on (or lengthens it) takes weight
// away from backends that already serve at their full weight, and ramps
// them from 10% again. README (Slow start): "a backend that is added,
// becomes healthy again, comes back from ejection or is undrained ramps
// its weight linearly from 10% to its full weight over the window"; the
// project's own TestHashKeyStableAcrossReloads reloads with "slow_start
// turned on (which ramps no backend that stays)". But member.since is
// stamped whether or not the pool ramps (control.go reconcile's add:
// "if had[pool] { m.since = now }", and likewise on health, ejection and
// drain changes), and buildPool applies the window of the running config
// to it: a backend added a moment ago while slow_start was off (weight 10,
// full traffic) falls to weight 1 (10%) as soon as a reload sets
// slow_start: 1h, and one whose 100ms ramp ended long ago falls again
// when the window is lengthened. A warm backend loses most of its traffic
// to the others on an unrelated-looking reload (with ring_hash or maglev
// its keys move). Expected: a backend at full weight stays at full weight;
// the new window applies to the next backend that joins or comes back.
func TestSlowStartTurnedOnKeepsServingBackend(t *testing.T) {
	for _, tt := range []struct {
		name      string
		oldWindow string // "" for none
	}{
		{"turned on", ""},
		{"lengthened after the ramp ended", "    slow_start: 100ms\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
			yml := func(window string, addrs ...string) string {
				y := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n" + window + "    backends:\n"
				for _, s := range addrs {
					y += "      - {address: " + s + ", weight: 10}\n"
				}
				return y
			}
			px := startProxy(t, yml(tt.oldWindow, a.addr(), b.addr()))
			apply(t, px, yml(tt.oldWindow, a.addr(), b.addr(), c.addr())) // c joins
			waitFor(t, "c at its full weight", 3*time.Second, func() bool {
				return stateOf(t, px, c.addr()).EffectiveWeight == 10
			})
			apply(t, px, yml("    slow_start: 1h\n", a.addr(), b.addr(), c.addr()))
			if w := stateOf(t, px, c.addr()).EffectiveWeight; w != 10 {
				t.Errorf("c, serving at full weight 10, after a reload set slow_start: 1h: effective weight %v, want 10", w)
			}
		})
	}
}
