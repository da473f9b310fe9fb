package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/metrics"
)

// r22CtlGauge is one backend's sluice_backend_{up,weight,state}: up,
// weight (-1 when absent), and the state whose gauge is 1.
type r22CtlGauge struct {
	up, weight float64
	state      string
	states     int // states at 1
}

// r22CtlReadGauges reads them for every (pool, backend) pair.
func r22CtlReadGauges(t *testing.T, m *metrics.Metrics) map[[2]string]*r22CtlGauge {
	t.Helper()
	out := map[[2]string]*r22CtlGauge{}
	get := func(labels map[string]string) *r22CtlGauge {
		k := [2]string{labels["pool"], labels["backend"]}
		if out[k] == nil {
			out[k] = &r22CtlGauge{up: -1, weight: -1}
		}
		return out[k]
	}
	for _, name := range []string{"sluice_backend_up", "sluice_backend_weight", "sluice_backend_state"} {
		for _, mt := range reviewFamily(t, m, name) {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			g := get(labels)
			v := mt.GetGauge().GetValue()
			switch name {
			case "sluice_backend_up":
				g.up = v
			case "sluice_backend_weight":
				g.weight = v
			default:
				if v == 1 {
					g.state = labels["state"]
					g.states++
				}
			}
		}
	}
	return out
}

// TestControlModelGaugesMatchStatus drives the controller through a
// random sequence of reloads (backends, weights, slow start, algorithm,
// upstream settings), admin drains and weights and DNS answers, and after
// each step checks that every backend's gauges say what /admin/pools says
// and that the snapshot's picks are the backends of positive effective
// weight. (The controller ticks hourly here, so that no drain ends
// between the Status call and the scrape.)
func TestControlModelGaugesMatchStatus(t *testing.T) {
	m := metrics.New("test")
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}
	dnsAddrs := []string{"127.0.0.1:80", "127.0.0.2:80", "127.0.0.1:3"}
	rnd := rand.New(rand.NewPCG(22, 1))
	gen := func() string {
		var b strings.Builder
		b.WriteString("drain_timeout: 30s\n")
		fmt.Fprintf(&b, "timeouts: {response: %ds}\n", 5+rnd.IntN(2))
		b.WriteString("routes:\n  - {match: {path_prefix: /p/}, pool: p}\n  - {pool: q}\npools:\n")
		for _, pool := range []string{"p", "q"} {
			fmt.Fprintf(&b, "  %s:\n", pool)
			b.WriteString("    algorithm: " + []string{"round_robin", "ring_hash", "p2c"}[rnd.IntN(3)] + "\n")
			if strings.Contains(b.String()[strings.LastIndex(b.String(), "  "+pool+":"):], "ring_hash") {
				b.WriteString("    hash_key: path\n")
			}
			if rnd.IntN(2) == 0 {
				b.WriteString("    slow_start: 1h\n")
			}
			if pool == "p" {
				b.WriteString("    discovery: {dns: {name: svc.test., port: 80, type: A, interval: 10s}}\n")
			}
			var picked []string
			for _, a := range addrs {
				if rnd.IntN(3) > 0 {
					picked = append(picked, a)
				}
			}
			if len(picked) == 0 && pool == "q" {
				picked = addrs[:1]
			}
			if len(picked) > 0 {
				b.WriteString("    backends:\n")
				for _, a := range picked {
					fmt.Fprintf(&b, "      - {address: %s, weight: %d}\n", a, rnd.IntN(4))
				}
			}
		}
		return b.String()
	}
	first := gen()
	px := startProxyTicked(t, first, m, nil, zerolog.Nop(), time.Hour)
	ctx := context.Background()
	check := func(step int, what string) {
		t.Helper()
		st, err := px.ctrl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gauges := r22CtlReadGauges(t, m)
		snap := px.proxy.Current()
		for _, ps := range st {
			picks := map[string]bool{}
			if pl := snap.pools[ps.Name]; pl != nil {
				for _, up := range pl.targets[:pl.picks] {
					picks[up.backend.Addr] = true
				}
			}
			for _, bs := range ps.Backends {
				g := gauges[[2]string{ps.Name, bs.Address}]
				if g == nil {
					t.Errorf("step %d (%s): %s/%s listed (%s) but has no gauges", step, what, ps.Name, bs.Address, bs.Source)
					continue
				}
				if bs.Source == "leaving" {
					if _, member := r22CtlMember(st, ps.Name, bs.Address); member {
						continue // also a member: the member's row rules
					}
					if g.up != 0 || g.weight != 0 || g.state != "draining" {
						t.Errorf("step %d (%s): leaving %s/%s: up %v weight %v state %q, want 0 0 draining", step, what, ps.Name, bs.Address, g.up, g.weight, g.state)
					}
					continue
				}
				wantUp := 0.0
				if bs.EffectiveWeight > 0 {
					wantUp = 1
				}
				if g.up != wantUp || g.weight != bs.EffectiveWeight || g.state != bs.State || g.states != 1 {
					t.Errorf("step %d (%s): %s/%s: gauges up %v weight %v state %q (%d at 1), status effective %v state %q",
						step, what, ps.Name, bs.Address, g.up, g.weight, g.state, g.states, bs.EffectiveWeight, bs.State)
				}
				if picks[bs.Address] != (bs.EffectiveWeight > 0) {
					t.Errorf("step %d (%s): %s/%s: in picks %v, effective weight %v", step, what, ps.Name, bs.Address, picks[bs.Address], bs.EffectiveWeight)
				}
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	check(0, "start")
	for step := 1; step <= 300; step++ {
		var what string
		switch op := rnd.IntN(5); op {
		case 0, 1:
			y := gen()
			what = "reload"
			if testing.Verbose() {
				t.Logf("step %d reload:\n%s", step, y)
			}
			apply(t, px, y)
		case 2:
			pool := []string{"p", "q"}[rnd.IntN(2)]
			a := addrs[rnd.IntN(len(addrs))]
			drain := rnd.IntN(2) == 0
			what = fmt.Sprintf("drain %s %s %v", pool, a, drain)
			_ = px.ctrl.SetDrain(ctx, pool, a, drain)
		case 3:
			pool := []string{"p", "q"}[rnd.IntN(2)]
			a := addrs[rnd.IntN(len(addrs))]
			w := uint32(rnd.IntN(3))
			what = fmt.Sprintf("weight %s %s %d", pool, a, w)
			_ = px.ctrl.SetWeight(ctx, pool, a, w)
		case 4:
			var ds []DiscoveredBackend
			for _, a := range dnsAddrs {
				if rnd.IntN(2) == 0 {
					ds = append(ds, DiscoveredBackend{Address: a, Weight: 1 + rnd.IntN(3)})
				}
			}
			what = fmt.Sprintf("dns %v", ds)
			cfg := px.proxy.Current().Config
			if err := px.ctrl.SetDiscovered(ctx, "p", *cfg.Pools["p"].Discovery.DNS, ds); err != nil {
				t.Fatal(err)
			}
		}
		if testing.Verbose() {
			t.Logf("step %d: %s", step, what)
		}
		check(step, what)
	}
}

func r22CtlMember(st []PoolStatus, pool, addr string) (BackendStatus, bool) {
	for _, ps := range st {
		if ps.Name != pool {
			continue
		}
		for _, b := range ps.Backends {
			if b.Address == addr && b.Source != "leaving" {
				return b, true
			}
		}
	}
	return BackendStatus{}, false
}
