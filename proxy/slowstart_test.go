package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/config"
)

// slowStartYAML is a pool of algorithm with slow_start over the backends,
// given as address and weight.
func slowStartYAML(algorithm string, window string, backends [][2]string) string {
	y := "routes: [{pool: p}]\npools:\n  p:\n    algorithm: " + algorithm + "\n    slow_start: " + window + "\n"
	if algorithm == "ring_hash" || algorithm == "maglev" {
		y += "    hash_key: path\n"
	}
	y += "    backends:\n"
	for _, b := range backends {
		y += fmt.Sprintf("      - {address: %s, weight: %s}\n", b[0], b[1])
	}
	return y
}

// TestSlowStart: the backends a pool starts with take their full weight
// at once (ramping them all together only bends their shares); one that
// joins later ramps, from a fraction of its weight even at weight 1 for
// the pickers that read weights as shares, and in whole weight units for
// ring_hash and maglev, whose weight 1 cannot ramp.
func TestSlowStart(t *testing.T) {
	tests := []struct {
		algorithm string
		weight    string
		// wantRamp: the joining backend's effective weight starts below
		// its weight.
		wantRamp bool
	}{
		{"round_robin", "1", true},
		{"p2c", "1", true},
		{"least_conn", "1", true},
		{"ewma", "1", true},
		{"sticky", "1", true},
		{"round_robin", "10", true},
		{"ring_hash", "10", true},
		{"maglev", "10", true},
		{"ring_hash", "1", false},
		{"maglev", "1", false},
	}
	for _, tt := range tests {
		t.Run(tt.algorithm+"/weight="+tt.weight, func(t *testing.T) {
			a, b, c := startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)
			start := [][2]string{{a.addr(), "10"}, {b.addr(), "1"}}
			px := startProxy(t, slowStartYAML(tt.algorithm, "1h", start))
			for _, s := range []struct {
				addr string
				want float64
			}{{a.addr(), 10}, {b.addr(), 1}} {
				if got := stateOf(t, px, s.addr).EffectiveWeight; got != s.want {
					t.Errorf("at start: effective weight of a backend of weight %v = %v, want %v (no ramp at start)", s.want, got, s.want)
				}
			}

			cfg, err := config.Parse("test.yaml", []byte(slowStartYAML(tt.algorithm, "1h", append(start, [2]string{c.addr(), tt.weight}))))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := px.ctrl.Apply(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			st := stateOf(t, px, c.addr())
			if ramping := st.EffectiveWeight < float64(st.Weight); ramping != tt.wantRamp {
				t.Errorf("joining backend of weight %d: effective weight %v, ramping %v, want ramping %v", st.Weight, st.EffectiveWeight, ramping, tt.wantRamp)
			}
			if st.EffectiveWeight <= 0 {
				t.Errorf("joining backend: effective weight %v, want above 0 (it takes some traffic from the start)", st.EffectiveWeight)
			}
			if got := stateOf(t, px, a.addr()).EffectiveWeight; got != 10 {
				t.Errorf("a backend already in the pool: effective weight %v after the join, want 10", got)
			}
		})
	}
}

// TestSlowStartAfterAdminWeightZero: a backend whose weight the admin API
// sets from 0 back to N ramps, as when the file makes the same change.
func TestSlowStartAfterAdminWeightZero(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	px := startProxy(t, slowStartYAML("round_robin", "1h", [][2]string{{a.addr(), "10"}, {b.addr(), "10"}}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, w := range []uint32{0, 10} {
		if err := px.ctrl.SetWeight(ctx, "p", b.addr(), w); err != nil {
			t.Fatal(err)
		}
	}
	if st := stateOf(t, px, b.addr()); st.EffectiveWeight >= 10 {
		t.Errorf("effective weight right after the admin API set 0 then 10 = %v, want below 10 (slow start)", st.EffectiveWeight)
	}
}
