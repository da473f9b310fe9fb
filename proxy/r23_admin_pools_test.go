package proxy

import (
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: README (Runtime admin API) documents /admin/pools' health_reason
// as "why the last probe failed, while unhealthy". A backend that
// recovers keeps a health_reason: handleEvents (control.go) stores the
// reason of every transition, the healthy one's too, so a recovered
// backend is listed as healthy with health_reason "status 200" ("connected"
// with tcp checks), which reads as a failure reason to a dashboard or an
// alert keyed on the field. Expected: no health_reason once healthy.
func TestHealthReasonClearedWhenHealthy(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, fastChecks))
	bs[1].healthStatus.Store(503)
	waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
	if r := stateOf(t, px, bs[1].addr).HealthReason; r != "status 503" {
		t.Fatalf("health_reason while unhealthy = %q, want status 503", r)
	}
	bs[1].healthStatus.Store(200)
	waitFor(t, "b healthy again", 2*time.Second, func() bool { return stateOf(t, px, bs[1].addr).Healthy })
	if st := stateOf(t, px, bs[1].addr); st.HealthReason != "" {
		t.Errorf("recovered backend: state %s, health_reason %q; want no health_reason (README: why the last probe failed, while unhealthy)", st.State, st.HealthReason)
	}
}

// Found by review. What was wrong: health_reason is "why the last probe failed" (README, Runtime
// admin API), but it is only set when the backend changes state: a
// backend marked unhealthy for "status 503" that then stops listening
// keeps showing "status 503" for as long as it stays down, while every
// probe fails with "connect: connection refused" (HAProxy's last_chk shows
// the last check's result). The operator is told the service answers 503
// when the host is gone. Expected: the reason of the latest failed probe.
func TestHealthReasonFollowsLastProbe(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	px := startProxy(t, modalYAML(bs, fastChecks))
	bs[1].healthStatus.Store(503)
	waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
	bs[1].kill()                                        // every probe from now on: connection refused
	deadline := time.Now().Add(1500 * time.Millisecond) // 15 probe intervals
	var st BackendStatus
	for time.Now().Before(deadline) {
		if st = stateOf(t, px, bs[1].addr); strings.Contains(st.HealthReason, "connect") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("backend down for 1.5 s: state %s, health_reason %q; want the last probe's failure (connect: connection refused)", st.State, st.HealthReason)
}
