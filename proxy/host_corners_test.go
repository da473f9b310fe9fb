package proxy

import "testing"

// TestHostWithoutNameCorners: IPv6 literals and a trailing dot
// are host names; an empty one with or without a port is not.
func TestHostWithoutNameCorners(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	tests := []struct {
		name string
		give string
		want int
	}{
		{"ipv6 with port", "[::1]:80", 200},
		{"ipv6", "[::1]", 200},
		{"trailing dot", "example.com.", 200},
		{"trailing dot with port", "example.com.:80", 200},
		{"port only", ":80", 400},
		{"dot", ".", 400},
		{"empty brackets with port", "[]:80", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawStatus(t, px.addr, "GET / HTTP/1.1\r\nHost: "+tt.give+"\r\n\r\n"); got != tt.want {
				t.Errorf("GET / with Host %q = %d, want %d", tt.give, got, tt.want)
			}
		})
	}
}
