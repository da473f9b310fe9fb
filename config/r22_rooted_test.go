package config

import "testing"

// Found by review. What was wrong: a static backend written with a rooted (fully qualified) host name,
// "api.internal.:8080", is refused as `bad host "api.internal."`. A rooted
// name is a host name (README, Pools: "a host must be an IP address or a
// name"), Go's dialer and the health prober connect to it as they are, and
// the README itself tells users to write names with a trailing dot to skip
// the resolv.conf search list (Kubernetes' ndots:5, "When DNS fails").
// nginx (`server api.internal.:8080;`) and HAProxy take such names. The
// config package even expects them: canonicalAddress strips the trailing
// dot to find "api.internal.:8080" beside "api.internal:8080" as one
// socket, and BackendAddress keeps it (TestBackendAddress has
// "api.internal.:080"), but validHostname refuses every name ending in
// ".", so that code is unreachable. Expected: the rooted name accepted, as a backend, a health check's
// host and a listen address.
func TestRootedNamesAccepted(t *testing.T) {
	for _, tt := range []struct{ name, text string }{
		{"backend", "routes: [{pool: web}]\npools:\n  web:\n    backends:\n      - address: api.internal.:8080\n"},
		{"health check host", "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n    health_check: {host: api.internal.}\n"},
		{"health check host:port", "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n    health_check: {host: \"api.internal.:8080\"}\n"},
		{"listen", "listen: localhost.:8080\nroutes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n"},
	} {
		if _, err := Parse("sluice.yaml", []byte(tt.text)); err != nil {
			t.Errorf("%s: a rooted host name is refused:\n%v", tt.name, err)
		}
	}
	// The root alone, or an empty label before it, is still no name.
	for _, addr := range []string{".:8080", "api..:8080", "api.internal..:8080"} {
		text := "routes: [{pool: web}]\npools:\n  web:\n    backends:\n      - address: \"" + addr + "\"\n"
		if _, err := Parse("sluice.yaml", []byte(text)); err == nil {
			t.Errorf("backend %q accepted", addr)
		}
	}
}
