package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/config"
	"sluice/metrics"
)

// TestChurnTopology: reloads add and remove a second pool, point
// route /b/ at one pool or the other, move backends between the pools
// (the same address in both), and a DNS discovery on pool p changes its
// answer, all as fast as the controller takes them, under load on both
// routes. Each pool a route points to always has the stable backend, so
// every request must get 200 and every POST reach a backend once; then
// the metrics of removed pools, routes and backends go.
func TestChurnTopology(t *testing.T) {
	l := newChurnLedger()
	h := churnHandler(l)
	stable, _ := startChurnBackend(t, "stable", h)
	var others []*testBackend
	for i := range 3 {
		b, _ := startChurnBackend(t, fmt.Sprintf("o%d", i), h)
		others = append(others, b)
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	gen := func() string {
		var b strings.Builder
		withQ := rnd.IntN(2) == 0
		b.WriteString("routes:\n  - { match: { path_prefix: /a/ }, pool: p }\n")
		if withQ {
			b.WriteString("  - { match: { path_prefix: /b/ }, pool: q }\n")
		} else {
			b.WriteString("  - { match: { path_prefix: /b/ }, pool: p }\n")
		}
		pool := func(name, algo string) {
			fmt.Fprintf(&b, "  %s:\n    algorithm: %s\n", name, algo)
			if name == "p" {
				b.WriteString("    discovery: { dns: { name: p.test., port: 80 } }\n")
			}
			fmt.Fprintf(&b, "    backends:\n      - { address: %s, weight: %d }\n", stable.addr(), 1+rnd.IntN(3))
			for _, o := range others {
				if rnd.IntN(2) == 0 {
					fmt.Fprintf(&b, "      - { address: %s, weight: %d }\n", o.addr(), rnd.IntN(3))
				}
			}
		}
		b.WriteString("pools:\n")
		algos := []string{"round_robin", "least_conn", "p2c", "random", "ewma"}
		pool("p", algos[rnd.IntN(len(algos))])
		if withQ {
			pool("q", algos[rnd.IntN(len(algos))])
		}
		b.WriteString("drain_timeout: 2s\ntimeouts: { upstream_idle: 30s }\n")
		return b.String()
	}
	m := metrics.New("test")
	first := gen()
	px := startProxyWith(t, first, m)
	cfg0, err := config.Parse("t.yaml", []byte(first))
	if err != nil {
		t.Fatal(err)
	}
	dns := *cfg0.Pools["p"].Discovery.DNS

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	waitA := churnLoad(ctx, t, "http://"+px.addr+"/a/x", l, 3)
	waitB := churnLoad(ctx, t, "http://"+px.addr+"/b/x", l, 3)
	var wg sync.WaitGroup
	wg.Add(2)
	reloads, lookups := 0, 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cfg, err := config.Parse("t.yaml", []byte(gen()))
			if err != nil {
				t.Error(err)
				return
			}
			if err := px.ctrl.Apply(context.Background(), cfg); err != nil {
				t.Error(err)
				return
			}
			reloads++
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(9, 10))
		for ctx.Err() == nil {
			var ds []DiscoveredBackend
			for _, o := range others {
				if r.IntN(2) == 0 {
					ds = append(ds, DiscoveredBackend{Address: o.addr(), Weight: r.IntN(3)})
				}
			}
			_ = px.ctrl.SetDiscovered(context.Background(), "p", dns, ds)
			lookups++
			time.Sleep(time.Millisecond)
		}
	}()
	waitA()
	waitB()
	wg.Wait()

	total := l.check(t, nil)
	t.Logf("%d requests, %d POSTs, %d reloads, %d lookups", total, len(l.posts), reloads, lookups)

	final := fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\n", stable.addr())
	apply(t, px, final)
	waitFor(t, "everything drained", 5*time.Second, func() bool {
		st, err := px.ctrl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(st) == 1 && len(st[0].Backends) == 1
	})
	for _, lv := range [][2]string{{"pool", "q"}, {"route", "/a/"}, {"route", "/b/"}} {
		if exported(t, m, lv[0], lv[1]) {
			t.Errorf("after the drains a series with %s=%q is still exported", lv[0], lv[1])
		}
	}
	for _, o := range others {
		if exported(t, m, "backend", o.addr()) {
			t.Errorf("after the drains a series of backend %s is still exported", o.addr())
		}
	}
}
