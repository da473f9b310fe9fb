package proxy

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"sluice/config"
)

// TestSetDiscoveredDropsStaleLookups: results of a lookup for a discovery
// the running config no longer has (the old watcher of a pool whose DNS
// name a reload changed, which stops only once the reload is applied) do
// not replace the new name's backends the reload seeded; results for the
// running discovery do. (Found by review.)
func TestSetDiscoveredDropsStaleLookups(t *testing.T) {
	yml := func(name string) string {
		return fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    discovery: {dns: {name: %s, port: 80, type: A, interval: 10s}}\n", name)
	}
	px := startProxy(t, yml("old.test"))
	parse := func(name string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(yml(name)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	oldCfg, newCfg := parse("old.test"), parse("new.test")
	ctx := context.Background()
	if err := px.ctrl.ApplySeeded(ctx, newCfg, map[string][]DiscoveredBackend{"p": {{Address: "127.0.0.2:80", Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	addrs := func() []string {
		var out []string
		for _, up := range px.proxy.Current().pools["p"].targets {
			out = append(out, up.backend.Addr)
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name string
		from config.DNSDiscovery
		addr string
		want []string
	}{
		{"the old name's watcher, late", *oldCfg.Pools["p"].Discovery.DNS, "127.0.0.3:80", []string{"127.0.0.2:80"}},
		{"the running name's watcher", *newCfg.Pools["p"].Discovery.DNS, "127.0.0.4:80", []string{"127.0.0.4:80"}},
	}
	for _, tt := range tests {
		if err := px.ctrl.SetDiscovered(ctx, "p", tt.from, []DiscoveredBackend{{Address: tt.addr, Weight: 1}}); err != nil {
			t.Fatalf("%s: SetDiscovered: %v", tt.name, err)
		}
		if got := addrs(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: backends %v, want %v", tt.name, got, tt.want)
		}
	}
}
