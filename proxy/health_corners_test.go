package proxy

import (
	"net/http"
	"testing"
	"time"
)

// All backends failing their checks: without panic_threshold the pool
// answers 503 with Retry-After: 1; with panic_threshold it balances over all
// of them, and /admin/pools reports panic_mode as routing uses it.
func TestHealthCornerPanicAllDown(t *testing.T) {
	for _, tc := range []struct {
		extra string
		panic bool
	}{{"", false}, {"    panic_threshold: 50%\n", true}} {
		bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
		px := startProxy(t, modalYAML(bs, fastChecks+tc.extra))
		for _, b := range bs {
			b.healthStatus.Store(503)
		}
		for _, b := range bs {
			waitFor(t, "unhealthy", 3*time.Second, func() bool { return !stateOf(t, px, b.addr).Healthy })
		}
		c := testClient(t)
		req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		st, _ := px.ctrl.Status(t.Context())
		if tc.panic {
			if resp.StatusCode != 200 || !st[0].Panic {
				t.Errorf("panic 50%%, all down: status %d panic_mode %v, want 200 and true", resp.StatusCode, st[0].Panic)
			}
		} else if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || st[0].Panic {
			t.Errorf("no panic, all down: status %d Retry-After %q panic_mode %v", resp.StatusCode, resp.Header.Get("Retry-After"), st[0].Panic)
		}
	}
}

// A backend both ejected (long ejection) and failing its checks: its checks
// passing again must not bring it back before the ejection ends.
func TestHealthCornerEjectedAndUnhealthy(t *testing.T) {
	bs := []*modalBackend{newModalBackend(t, "a"), newModalBackend(t, "b")}
	od := "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }\n"
	px := startProxy(t, modalYAML(bs, fastChecks+od))
	bs[1].trafficStatus.Store(500)
	c := testClient(t)
	for range 8 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	waitFor(t, "b ejected", 2*time.Second, func() bool { return stateOf(t, px, bs[1].addr).Ejected })
	bs[1].healthStatus.Store(503)
	waitFor(t, "b unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, bs[1].addr).Healthy })
	bs[1].healthStatus.Store(200)
	bs[1].trafficStatus.Store(200)
	waitFor(t, "b healthy", 2*time.Second, func() bool { return stateOf(t, px, bs[1].addr).Healthy })
	before := bs[1].traffic.Load()
	for range 10 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if n := bs[1].traffic.Load() - before; n != 0 {
		t.Errorf("ejected backend got %d requests after its checks passed again", n)
	}
	if st := stateOf(t, px, bs[1].addr); st.State != StateEjected {
		t.Errorf("state %s, want ejected", st.State)
	}
}
