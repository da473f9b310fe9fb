package discovery

import "testing"

// TestSameFailureKeyIPv6: failures naming different IPv6 servers are
// different failures. sameFailureKey (5beeeab) is meant to
// drop port numbers only ("anything else" tells failures apart, and
// TestSameFailureKey holds 10.0.0.1:53 and 10.0.0.2:53 apart). Its
// pattern `:[0-9]+\b` also eats the all-digit groups of IPv6 addresses,
// so failures naming different IPv6 servers get one key: [fd00::1]:53 and
// [fd00::2]:53 both become "[fd00::]:", and 2001:db8:1::53 and
// 2001:db8:2::53 both "2001:db8:::". A failure moving to another
// resolver (resolv.conf lists several; Go's error names the one that
// answered last) is then logged at debug level, not warn, on IPv6 only.
func TestSameFailureKeyIPv6(t *testing.T) {
	tests := []struct{ a, b string }{
		{"lookup api.test on [fd00::1]:53: no such host", "lookup api.test on [fd00::2]:53: no such host"},
		{"lookup api.test on [2001:db8:1::53]:53: i/o timeout", "lookup api.test on [2001:db8:2::53]:53: i/o timeout"},
	}
	for _, tt := range tests {
		if sameFailureKey(errString(tt.a)) == sameFailureKey(errString(tt.b)) {
			t.Errorf("%q and %q have one key %q: they name different servers", tt.a, tt.b, sameFailureKey(errString(tt.a)))
		}
	}
	// The local port still does not count.
	a := "lookup api.test on [::1]:53: read udp [::1]:40001->[::1]:53: read: connection refused"
	b := "lookup api.test on [::1]:53: read udp [::1]:55277->[::1]:53: read: connection refused"
	if sameFailureKey(errString(a)) != sameFailureKey(errString(b)) {
		t.Errorf("local ports tell %q and %q apart", a, b)
	}
}
