//go:build !race

package proxy

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/metrics"
)

// TestProxyZeroAllocs guards the steady-state hot path: once buffers and
// connections are warm, a proxied GET allocates nothing (client and
// servers of the rig included).
func TestProxyZeroAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		m    *metrics.Metrics
	}{{"metrics off", nil}, {"metrics on", metrics.New("test")}} {
		t.Run(tt.name, func(t *testing.T) { testProxyZeroAllocs(t, tt.m) })
	}
}

func testProxyZeroAllocs(t *testing.T, m *metrics.Metrics) {
	rig := newInMemoryRig(t, 2, m)
	defer rig.stop()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice/index.html?x=1")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	do := func() {
		if err := rig.client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("Do() = %v, status %d", err, resp.StatusCode())
		}
	}
	for range 1000 {
		do()
	}
	if got := testing.AllocsPerRun(2000, do); got != 0 {
		t.Errorf("allocs per proxied GET = %v, want 0", got)
	}
}
