package discovery

import (
	"context"
	"testing"
)

// TestMappedAAAAIsOneBackend: an AAAA record holding an
// IPv4-mapped address (::ffff:10.0.0.1) names the same backend as the A
// record 10.0.0.1: one backend, 10.0.0.1:80, not a second one at
// [::ffff:10.0.0.1]:80 that would double its share.
func TestMappedAAAAIsOneBackend(t *testing.T) {
	f := startDNS(t)
	f.setIPs("mapped.test", "10.0.0.1", "::ffff:10.0.0.1", "10.0.0.1", "2001:db8::1")
	got, err := NewWatcher("api", aConfig(f, "mapped.test", 80), WatcherOptions{}).Resolve(context.Background())
	checkResolve(t, got, err, []Backend{b("10.0.0.1:80", 1), b("[2001:db8::1]:80", 1)}, "")
}
