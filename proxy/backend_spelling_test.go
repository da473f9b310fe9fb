package proxy

import (
	"context"
	"fmt"
	"net"
	"testing"

	"sluice/config"
)

// TestStaticAndDiscoveredSameSocketCountOnce: a backend listed in the file
// as 127.0.0.1:0PORT and found by DNS as 127.0.0.1:PORT is one backend with
// one share (README, Pools: one spelling per socket). (Found by review:
// members were keyed by the address as written, so it was two members,
// and took two shares under round robin, two probes, two series.)
func TestStaticAndDiscoveredSameSocketCountOnce(t *testing.T) {
	b := startBackend(t, "b", nil)
	c := startBackend(t, "c", nil)
	_, port, _ := net.SplitHostPort(b.addr())
	yml := fmt.Sprintf("routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n"+
		"    backends:\n      - { address: \"127.0.0.1:0%s\" }\n      - { address: %s }\n"+
		"    discovery: {dns: {name: b.test, port: %s, type: A, interval: 10s}}\n", port, c.addr(), port)
	px := startProxy(t, yml)
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	// What the DNS watcher hands over for b.test -> 127.0.0.1 (dns.go
	// joins Unmap().String() and the port).
	found := []DiscoveredBackend{{Address: net.JoinHostPort("127.0.0.1", port), Weight: 1}}
	if err := px.ctrl.SetDiscovered(context.Background(), "p", *cfg.Pools["p"].Discovery.DNS, found); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, up := range px.proxy.Current().pools["p"].targets {
		addrs = append(addrs, up.backend.Addr)
	}
	if len(addrs) != 2 {
		t.Errorf("pool targets %v, want 2 (b once, and c)", addrs)
	}
	cl := testClient(t)
	hits := map[string]int{}
	for range 120 {
		code, from, _ := get(t, cl, "http://"+px.addr+"/", nil)
		if code != 200 {
			t.Fatalf("GET = %d, want 200", code)
		}
		hits[from]++
	}
	if hits["b"] != 60 || hits["c"] != 60 {
		t.Errorf("round robin over b and c (b also discovered): b %d, c %d of 120, want 60 and 60", hits["b"], hits["c"])
	}
}
