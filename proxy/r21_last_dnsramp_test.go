package proxy

import (
	"context"
	"testing"
	"time"

	"sluice/config"
)

// TestLastDNSReloadRamps walks one pool (a listed backend beside
// DNS discovery, slow_start 1h) through the reload paths that cmd/sluice
// takes (discovery.go needSeeds/seedsFor, then ApplySeeded, then the new
// watcher's answers through SetDiscovered), and checks README (Slow
// start): the first answer of a pool's lookup joins at full weight, also
// beside the listed backend and after a failed seed; a later answer's new
// backend ramps, also after an interval-only reload; an old lookup's late
// answer is dropped; removing discovery keeps the listed backend serving.
// Traffic goes through the proxy on real sockets.
func TestDNSReloadRamps(t *testing.T) {
	a := startBackend(t, "a", nil)
	bk := map[string]*testBackend{}
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		bk[n] = startBackend(t, n, nil)
	}
	yml := func(disc string) string {
		s := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    slow_start: 1h\n" +
			"    backends:\n      - {address: " + a.addr() + "}\n"
		if disc != "" {
			s += "    discovery: {dns: {" + disc + "}}\n"
		}
		return s
	}
	dA := config.DNSDiscovery{Name: "svc.test.", Port: 80, Type: "A", Interval: 10 * time.Second}
	discA := "name: svc.test., port: 80, type: A, interval: 10s"
	dR := dA
	dR.Resolver = "127.0.0.1:53"
	discR := discA + ", resolver: '127.0.0.1:53'"
	dN := dR
	dN.Name = "other.test."
	discN := "name: other.test., port: 80, type: A, interval: 10s, resolver: '127.0.0.1:53'"
	dI := dN
	dI.Interval = 20 * time.Second
	discI := "name: other.test., port: 80, type: A, interval: 20s, resolver: '127.0.0.1:53'"

	addrs := func(names ...string) []DiscoveredBackend {
		var out []DiscoveredBackend
		for _, n := range names {
			out = append(out, DiscoveredBackend{Address: bk[n].addr(), Weight: 1})
		}
		return out
	}
	p := startProxy(t, yml(discA))
	// seeded reloads as cmd/sluice does: a seed (nil: the lookup
	// failed) for a pool whose lookup is new or changed, none otherwise.
	reload := func(disc string, seeds map[string][]DiscoveredBackend) {
		t.Helper()
		if err := p.ctrl.ApplySeeded(context.Background(), mustParse(t, yml(disc)), seeds); err != nil {
			t.Fatal(err)
		}
	}
	seeded := func(disc string, seed []DiscoveredBackend) {
		t.Helper()
		reload(disc, map[string][]DiscoveredBackend{"p": seed})
	}
	answer := func(from config.DNSDiscovery, names ...string) {
		t.Helper()
		if err := p.ctrl.SetDiscovered(context.Background(), "p", from, addrs(names...)); err != nil {
			t.Fatal(err)
		}
	}
	// member is n's entry among the pool's members (not a leaving one).
	member := func(n string) (BackendStatus, bool) {
		t.Helper()
		addr := a.addr()
		if n != "a" {
			addr = bk[n].addr()
		}
		st, err := p.ctrl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, pl := range st {
			for _, b := range pl.Backends {
				if b.Address == addr && b.Source != "leaving" {
					return b, true
				}
			}
		}
		return BackendStatus{}, false
	}
	weight := func(n string) float64 {
		t.Helper()
		b, ok := member(n)
		if !ok {
			t.Fatalf("backend %s is not a member", n)
		}
		return b.EffectiveWeight
	}
	gone := func(n string) bool {
		t.Helper()
		_, ok := member(n)
		return !ok
	}
	full := func(step string, names ...string) {
		t.Helper()
		for _, n := range names {
			if w := weight(n); w != 1 {
				t.Errorf("%s: backend %s effective weight %v, want 1 (full)", step, n, w)
			}
		}
	}
	ramps := func(step string, names ...string) {
		t.Helper()
		for _, n := range names {
			if w := weight(n); w <= 0 || w >= 1 {
				t.Errorf("%s: backend %s effective weight %v, want in (0, 1) (slow start)", step, n, w)
			}
		}
	}

	// Start: the first answer joins at full weight beside a.
	answer(dA, "b")
	full("first answer at start", "a", "b")
	c := testClient(t)
	hits := map[string]int{}
	for range 20 {
		_, be, _ := get(t, c, "http://"+p.addr+"/", nil)
		hits[be]++
	}
	if hits["a"] != 10 || hits["b"] != 10 {
		t.Errorf("round robin over a and b at full weight: %v, want 10 each", hits)
	}
	// A later answer's new backend ramps.
	answer(dA, "b", "c")
	ramps("later answer", "c")

	// A reload to another resolver (another lookup), seeded: the new
	// lookup's first answer is at full weight, c keeps its ramp.
	seeded(discR, addrs("b", "c", "d"))
	full("seeded first answer of a new lookup", "a", "b", "d")
	ramps("seeded first answer of a new lookup", "c")
	// The old watcher answers late: dropped.
	answer(dA, "e")
	if !gone("e") {
		t.Errorf("an answer of the replaced lookup was applied")
	}
	// The new watcher's first answer (after a seed) ramps what is new.
	answer(dR, "b", "c", "d", "e")
	ramps("answer after a seed", "e")

	// Discovery removed: the listed backend serves on.
	reload("", map[string][]DiscoveredBackend{})
	full("discovery removed", "a")
	for _, n := range []string{"b", "c", "d", "e"} {
		if !gone(n) {
			t.Errorf("discovery removed: backend %s still a member", n)
		}
	}
	// Re-added (the same lookup as before), seeded: first answer, full.
	seeded(discR, addrs("e"))
	full("discovery re-added", "a", "e")

	// Another name, its seed failed: the pool keeps a alone; the first
	// answer is at full weight.
	seeded(discN, nil)
	if !gone("e") {
		t.Errorf("another name with a failed seed: e still a member")
	}
	answer(dN, "f")
	full("first answer after a failed seed", "a", "f")

	// Interval only: no seed; the old watcher's late answer is dropped,
	// the new watcher's answer ramps what is new and keeps f.
	reload(discI, map[string][]DiscoveredBackend{})
	full("interval-only reload", "a", "f")
	answer(dN, "f", "d")
	if !gone("d") {
		t.Errorf("an answer of the former interval's watcher was applied")
	}
	answer(dI, "f", "g")
	full("interval-only reload", "a", "f")
	ramps("answer after an interval-only reload", "g")
}
