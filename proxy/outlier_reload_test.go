package proxy

import (
	"testing"
	"time"
)

// TestOutlierThresholdAndSettingsInOneReload: a reload that
// changes timeouts (new client, shared Outlier) and consecutive_failures
// at once applies the new threshold to the carried streak.
func TestOutlierThresholdAndSettingsInOneReload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold int
		eject     bool
	}{
		{"lowered", 2, true},
		{"raised", 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
			w := []int{10, 10}
			od := func(n int) string {
				return "    outlier_detection: { consecutive_failures: " + itoa16d(n) + ", base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }\n"
			}
			px := startProxy(t, outlierYAML("timeouts: { response: 5s }\n", bs, w, od(4)))
			bs[1].trafficStatus.Store(500)
			outlierSendUntil(t, px, bs[1], 3)
			if stateOf(t, px, bs[1].addr).Ejected {
				t.Fatalf("b ejected after 3 failures of 4")
			}
			apply(t, px, outlierYAML("timeouts: { response: 6s }\n", bs, w, od(tc.threshold)))
			outlierSendUntil(t, px, bs[1], 4)
			deadline := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(deadline) && !stateOf(t, px, bs[1].addr).Ejected {
				time.Sleep(10 * time.Millisecond)
			}
			if got := stateOf(t, px, bs[1].addr).Ejected; got != tc.eject {
				t.Errorf("after 4 consecutive failures, threshold %d set in the same reload as new timeouts: ejected %v, want %v", tc.threshold, got, tc.eject)
			}
		})
	}
}

func itoa16d(n int) string {
	if n >= 10 {
		return string(rune('0'+n/10)) + string(rune('0'+n%10))
	}
	return string(rune('0' + n))
}
