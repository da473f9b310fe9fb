package config

import (
	"testing"
	"time"
)

// TestSameLookup: what makes two DNS discovery settings ask another
// question (a new first lookup on reload) and what does not.
func TestSameLookup(t *testing.T) {
	base := DNSDiscovery{Name: "api.internal", Port: 8080, Type: "A", Interval: time.Second, Resolver: "127.0.0.1:53"}
	srv := DNSDiscovery{Name: "_http._tcp.api.internal", Port: 8080, Type: "SRV", Interval: time.Second}
	for _, tc := range []struct {
		name string
		a, b DNSDiscovery
		same bool
	}{
		{"identical", base, base, true},
		{"interval", base, with(base, func(d *DNSDiscovery) { d.Interval = time.Minute }), true},
		{"port with A", base, with(base, func(d *DNSDiscovery) { d.Port = 9090 }), false},
		{"port with SRV", srv, with(srv, func(d *DNSDiscovery) { d.Port = 0 }), true},
		{"name", base, with(base, func(d *DNSDiscovery) { d.Name = "web.internal" }), false},
		{"resolver", base, with(base, func(d *DNSDiscovery) { d.Resolver = "" }), false},
		{"type", base, with(base, func(d *DNSDiscovery) { d.Type = "SRV" }), false},
	} {
		if got := tc.a.SameLookup(tc.b); got != tc.same {
			t.Errorf("%s: SameLookup = %v, want %v", tc.name, got, tc.same)
		}
		if got := tc.b.SameLookup(tc.a); got != tc.same {
			t.Errorf("%s (swapped): SameLookup = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func with(d DNSDiscovery, change func(*DNSDiscovery)) DNSDiscovery {
	change(&d)
	return d
}
