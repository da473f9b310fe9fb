package discovery

import (
	"context"
	"testing"
	"time"

	"sluice/config"
)

// TestResolveHostsAndLiterals: /etc/hosts names with one family and
// IP literals resolve through the system resolver.
func TestResolveHostsAndLiterals(t *testing.T) {
	for _, name := range []string{"localhost", "vm", "127.0.0.1", "::1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := NewWatcher("api", config.DNSDiscovery{Name: name, Port: 80}, WatcherOptions{}).Resolve(ctx)
		cancel()
		if err != nil || len(got) == 0 {
			t.Errorf("Resolve(%q) = %v, %v", name, got, err)
		}
		t.Logf("%s -> %v", name, got)
	}
}
