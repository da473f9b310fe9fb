//go:build !race

package metrics

import (
	"testing"
	"time"
)

// TestHotPathAllocs guards the promise of the package: every method the
// request path calls is free of allocations. (The race detector allocates,
// hence the build tag.)
func TestHotPathAllocs(t *testing.T) {
	m := New("test")
	b := m.Backend("web", "10.0.0.1:80")
	r := m.Route("api")
	rc := m.Requests("api", "web", "10.0.0.1:80")
	p := m.Pool("web")
	var nilBackend *BackendSeries
	tests := []struct {
		name string
		give func()
	}{
		{"InFlightAdd", func() { m.InFlightAdd(1); m.InFlightAdd(-1) }},
		{"ConnOpened/ConnClosed", func() { m.ConnOpened(); m.ConnClosed() }},
		{"Bytes", func() { m.Bytes(512, 4096) }},
		{"AccessLogDropped", m.AccessLogDropped},
		{"ObserveUpstream", func() { b.ObserveUpstream(1500 * time.Microsecond) }},
		{"UpstreamError", func() { b.UpstreamError(KindTimeout) }},
		{"ObserveDuration", func() { r.ObserveDuration(2 * time.Millisecond) }},
		{"Inc", func() { rc.Inc(200); rc.Inc(503) }},
		{"Retry", p.Retry},
		{"NoBackend", p.NoBackend},
		{"nil handle", func() { nilBackend.ObserveUpstream(time.Millisecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.give); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tt.name, n)
			}
		})
	}
}
