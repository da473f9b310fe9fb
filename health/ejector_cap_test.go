package health

import (
	"testing"
	"time"

	"sluice/config"
)

// TestEjectionCountCappedAtMax: ejections at max_ejection_time do not add
// to the count of past ejections, as Envoy's multiplier stops at the cap:
// a backend ejected 10 times and one ejected 3 times, both last at the cap
// and back for the same time, get the same next ejection. (Found by
// review: the count grew with every ejection, and the decay had to work
// through all of them.)
func TestEjectionCountCappedAtMax(t *testing.T) {
	cfg := config.OutlierDetection{BaseEjectionTime: time.Second, MaxEjectionTime: 4 * time.Second, MaxEjectionPercent: 100}
	nextAfter := func(ejections int) time.Duration {
		e := NewEjector(cfg)
		now := epoch
		var last time.Duration
		for range ejections { // 1s, 2s, 4s, 4s, 4s, ...
			until, ok := e.Eject("a", now, 10)
			if !ok {
				t.Fatal("Eject refused at 100%")
			}
			last = until.Sub(now)
			now = until
			e.Expire(now)
		}
		if last != cfg.MaxEjectionTime {
			t.Fatalf("setup: the last of %d ejections lasted %v, want the max %v", ejections, last, cfg.MaxEjectionTime)
		}
		now = now.Add(3 * cfg.BaseEjectionTime) // back in the pool, good, for 3 bases
		until, _ := e.Eject("a", now, 10)
		return until.Sub(now)
	}
	three, ten := nextAfter(3), nextAfter(10)
	if three != time.Second {
		t.Fatalf("after 3 ejections (1s, 2s, 4s) and 3s back, the next lasts %v, want 1s", three)
	}
	if ten != three {
		t.Errorf("after 10 ejections (the last 8 all at the 4s cap) and 3s back, the next lasts %v; after 3 ejections (the last at the cap) %v: ejections at the cap should not add to the count", ten, three)
	}
}
