package config

import (
	"strings"
	"testing"
)

// TestBackendWithoutHost: the README says of a backend address
// "a host must be an IP address or a name", and CheckAddress takes an
// empty host for "all interfaces", which is right for listen but not for
// an address to connect to: a backend ":8080" (or a DNS resolver ":53")
// passes -check, and Go's dialer then connects to the local system. With
// preserve_host: false its Host header would be ":8080", an invalid one.
func TestBackendWithoutHost(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"backend", "routes: [{pool: a}]\npools:\n  a:\n    backends: [{address: ':8080'}]\n", "s.yaml:4: pools.a.backends[0].address"},
		{"resolver", "routes: [{pool: a}]\npools:\n  a:\n    discovery: {dns: {name: x.test, port: 80, resolver: ':53'}}\n", "s.yaml:4: pools.a.discovery.dns.resolver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(tc.yaml))
			// Found by review, fixed: expected an error naming the field ("want host:port
			// with a host"); it was accepted.
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Parse = %v, want an error for %s (no host)", err, tc.field)
			}
		})
	}
}

// TestEmptyPoolName: a pool named "" was accepted, though no route
// can name it (routes[].pool "" is "required"); its backends are probed
// and get metric series with pool="", the label value the README reserves
// for requests that matched no route.
func TestEmptyPoolName(t *testing.T) {
	_, err := Parse("s.yaml", []byte("routes: [{pool: a}]\npools:\n  '':\n    backends: [{address: '127.0.0.1:1'}]\n  a:\n    backends: [{address: '127.0.0.1:2'}]\n"))
	// Found by review, fixed: expected "s.yaml:3: pools.: a pool needs a name" (or similar);
	// it was accepted.
	if err == nil || !strings.Contains(err.Error(), "s.yaml:3:") {
		t.Errorf("Parse = %v, want an error at line 3 for the empty pool name", err)
	}
}
