package metrics

import (
	"testing"
	"time"
)

// BenchmarkHotPath measures each request-path call alone, with every core
// hitting the same series (the worst case for the shared cache lines).
func BenchmarkHotPath(b *testing.B) {
	m := New("bench")
	be := m.Backend("web", "10.0.0.1:80")
	r := m.Route("api")
	rc := m.Requests("api", "web", "10.0.0.1:80")
	p := m.Pool("web")
	benches := []struct {
		name string
		fn   func()
	}{
		{"InFlightAdd", func() { m.InFlightAdd(1) }},
		{"Bytes", func() { m.Bytes(512, 4096) }},
		{"ObserveUpstream", func() { be.ObserveUpstream(1500 * time.Microsecond) }},
		{"UpstreamError", func() { be.UpstreamError(KindTimeout) }},
		{"ObserveDuration", func() { r.ObserveDuration(2 * time.Millisecond) }},
		{"Inc", func() { rc.Inc(200) }},
		{"Retry", p.Retry},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bb.fn()
				}
			})
		})
	}
}

// BenchmarkRequest is everything one proxied request records: in flight
// up and down, upstream and client latency, the status counter and bytes.
func BenchmarkRequest(b *testing.B) {
	m := New("bench")
	be := m.Backend("web", "10.0.0.1:80")
	r := m.Route("api")
	rc := m.Requests("api", "web", "10.0.0.1:80")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.InFlightAdd(1)
			be.ObserveUpstream(1500 * time.Microsecond)
			rc.Inc(200)
			r.ObserveDuration(2 * time.Millisecond)
			m.Bytes(512, 4096)
			m.InFlightAdd(-1)
		}
	})
}
