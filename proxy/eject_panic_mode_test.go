package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/health"
)

// TestEjectShareUsesCurrentPanicMode: one batch of control-plane
// events in which two backends come back healthy (active checks) and one
// of them completes a streak of failures (passive), as happens when the
// controller is busy and the inbox collects both.
//
// Pool of 4, panic_threshold 25%, max_ejection_percent 50: b0 is
// ejected and b1..b3 unhealthy, so the pool is in panic (0 ready of 4).
// In one batch b1 and b2 become healthy and b1 trips. After the health
// changes the pool is not in panic (b1, b2 ready: 50% >= 25%), and of
// the 3 backends that would take traffic but for ejection (b0, b1, b2)
// one is ejected: ejecting b1 makes 2 of 3, 66% > 50%.
//
// Before the fix (found by review): expected b1 not ejected (max_ejection_percent reached); actually
// it is, and the pool serves from b2 alone, out of panic. Cause:
// Controller.eject decides panic mode from the published snapshot
// (c.proxy.Current().pools[pool].panic), which handleEvents republishes
// only after the whole batch, while it counts members by their current
// health: the stale panic flag counts the still-unhealthy b3 in the
// pool's size (4, so 2 of 4 = 50% passes). Fix: compute panic from the
// members as buildPool does (health.Panic(ready, candidates,
// pc.PanicThreshold)), or publish before a passive event is applied.
func TestEjectShareUsesCurrentPanicMode(t *testing.T) {
	var bs []*modalBackend
	for i := range 4 {
		bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
	}
	od := "    panic_threshold: 25%\n    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }\n"
	px := startProxy(t, outlierYAML("", bs, []int{1, 1, 1, 1}, od))
	c := px.ctrl
	ctx := context.Background()
	event := func(i int, src string, healthy bool) health.Event {
		k := memberKey{"p", bs[i].addr}
		return health.Event{Pool: "p", Addr: bs[i].addr, Source: src, Healthy: healthy, Reason: "test", Epoch: c.members[k].probeEpoch}
	}
	batch := func(evs func() []health.Event) {
		t.Helper()
		if err := c.do(ctx, func() error {
			for _, e := range evs() {
				c.inbox.Put(e)
			}
			c.handleEvents(time.Now())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// b0 ejected (the first ejection is always allowed).
	batch(func() []health.Event { return []health.Event{event(0, health.SourcePassive, false)} })
	// b1..b3 fail their checks: panic mode.
	batch(func() []health.Event {
		return []health.Event{event(1, health.SourceActive, false), event(2, health.SourceActive, false), event(3, health.SourceActive, false)}
	})
	if !stateOf(t, px, bs[0].addr).Ejected {
		t.Fatal("b0 not ejected by the first trip")
	}
	if s := px.proxy.Current(); !s.pools["p"].panic {
		t.Fatal("pool not in panic with 0 of 4 backends ready")
	}
	// One batch: b1, b2 healthy again; b1 trips.
	batch(func() []health.Event {
		return []health.Event{event(1, health.SourceActive, true), event(2, health.SourceActive, true), event(1, health.SourcePassive, false)}
	})
	s := px.proxy.Current()
	if s.pools["p"].panic {
		t.Fatal("pool still in panic: the scenario needs it out of panic after the batch")
	}
	if stateOf(t, px, bs[1].addr).Ejected {
		t.Errorf("b1 ejected: 2 of the 3 backends that would take traffic (b0, b1, b2) now ejected, over max_ejection_percent 50; "+
			"the pool serves from %d backend(s) (eject read the panic flag of the snapshot before the batch)", s.pools["p"].picks)
	}
}
