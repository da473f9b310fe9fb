package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// outlierYAML is modalYAML with a top-level prefix (timeouts) and a
// per-backend weight.
func outlierYAML(top string, bs []*modalBackend, weights []int, extra string) string {
	y := top + "routes: [{ pool: p }]\npools:\n  p:\n    algorithm: round_robin\n" + extra + "    backends:\n"
	for i, b := range bs {
		y += fmt.Sprintf("      - { address: %s, weight: %d }\n", b.addr, weights[i])
	}
	return y
}

// sendUntil sends GETs through px until b has taken n non-health requests.
func outlierSendUntil(t *testing.T, px *testProxy, b *modalBackend, n int64) {
	t.Helper()
	c := testClient(t)
	for i := 0; b.traffic.Load() < n; i++ {
		if i > 200 {
			t.Fatalf("%s took %d requests of %d wanted", b.name, b.traffic.Load(), n)
		}
		get(t, c, "http://"+px.addr+"/", nil)
	}
}

// A reload that changes an upstream setting (timeouts.response here)
// gives every backend a new client (newUpstream), and with it a new
// health.Outlier: the streak of consecutive failures a failing backend had
// run up is lost, and it keeps taking traffic for another
// consecutive_failures requests. README (Hot reload): a backend's health,
// ejection, in-flight and EWMA counters carry over; the active checks'
// streak carries over a check change for the same reason
// (TestHealthCornerCheckChangeKeepsFailureStreak).
func TestOutlierStreakSurvivesSettingsReload(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	w := []int{10, 10}
	od := "    outlier_detection: { consecutive_failures: 4, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }\n"
	px := startProxy(t, outlierYAML("timeouts: { response: 5s }\n", bs, w, od))
	bs[1].trafficStatus.Store(500)
	outlierSendUntil(t, px, bs[1], 3) // 3 consecutive 500s from b
	if st := stateOf(t, px, bs[1].addr); st.Ejected {
		t.Fatalf("b ejected after 3 failures of 4")
	}
	// Only the response timeout changes.
	apply(t, px, outlierYAML("timeouts: { response: 6s }\n", bs, w, od))
	outlierSendUntil(t, px, bs[1], 4) // the 4th consecutive failure
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && !stateOf(t, px, bs[1].addr).Ejected {
		time.Sleep(10 * time.Millisecond)
	}
	if !stateOf(t, px, bs[1].addr).Ejected {
		// Found by review, fixed: expected b ejected at its 4th consecutive failure (the
		// streak carries over the reload); before: the reload's new
		// upstream client came with a fresh Outlier at streak 0, so b is
		// still in rotation and needs 4 more failures.
		t.Errorf("b not ejected after 4 consecutive failures with a timeouts reload in between (streak reset by the new client)")
	}
}

// max_ejection_percent is "never eject more than this share of a pool";
// its point is to keep serving capacity. Backends of weight 0 and ones
// drained through the admin API take no new requests, yet eject() counts
// them in the pool's size, so with two of them beside two serving
// backends at 50%, both serving backends are ejected and the pool answers
// 503 to everything, where the same pool without the idle members keeps
// one.
func TestMaxEjectionPercentCountsIdleMembers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		w     []int
		drain bool
	}{
		{"weight 0 members", []int{10, 10, 0, 0}, false},
		{"admin-drained members", []int{10, 10, 10, 10}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bs []*modalBackend
			for i := range 4 {
				bs = append(bs, newModalBackend(t, fmt.Sprint("b", i)))
			}
			od := "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }\n"
			px := startProxy(t, outlierYAML("", bs, tc.w, od))
			if tc.drain {
				for _, b := range bs[2:] {
					if err := px.ctrl.SetDrain(context.Background(), "p", b.addr, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			bs[0].trafficStatus.Store(500)
			bs[1].trafficStatus.Store(500)
			c := testClient(t)
			for range 20 {
				get(t, c, "http://"+px.addr+"/", nil)
			}
			time.Sleep(150 * time.Millisecond)
			ejected := 0
			for _, b := range bs[:2] {
				if stateOf(t, px, b.addr).Ejected {
					ejected++
				}
			}
			code, _, _ := get(t, c, "http://"+px.addr+"/", nil)
			if ejected == 2 {
				// Found by review, fixed: expected at most one of the two serving backends
				// ejected (50% of the backends that take traffic), the
				// pool still answering; before: both ejected, the idle
				// members counted in the pool's size, and the pool
				// answers 503 (no usable backend).
				t.Errorf("both serving backends ejected at max_ejection_percent 50 (idle members counted); next request got %d", code)
			}
		})
	}
}
