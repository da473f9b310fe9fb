package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/config"
)

// TestChurnRollingUpdate: a DNS pool goes through a rolling
// update as an orchestrator does it: a new instance starts and appears in
// the answer, then the oldest leaves the answer, and once /admin/pools no
// longer lists it (drained and freed) it is stopped gracefully. Reloads
// that change the response timeout (a new client for every backend) come
// meanwhile. No instance is stopped while sluice may still send to it, so
// not one request may fail, POSTs included, and none reaches a backend
// twice.
func TestChurnRollingUpdate(t *testing.T) {
	l := newChurnLedger()
	h := churnHandler(l)
	yml := func(response string) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: least_conn
    discovery: { dns: { name: api.test., port: 80, interval: 10s } }
drain_timeout: 5s
timeouts: { response: %s, upstream_idle: 30s }
`, response)
	}
	parse := func(s string) *config.Config {
		cfg, err := config.Parse("t.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	px := startProxy(t, yml("5s"))
	dns := *parse(yml("5s")).Pools["p"].Discovery.DNS
	var live []*flappyBackend
	set := func() {
		var ds []DiscoveredBackend
		for _, b := range live {
			ds = append(ds, DiscoveredBackend{Address: b.addr, Weight: 1})
		}
		if err := px.ctrl.SetDiscovered(context.Background(), "p", dns, ds); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		live = append(live, startFlappy(t, h))
	}
	set()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	wait := churnLoad(ctx, t, "http://"+px.addr+"/x", l, 6)
	reloads := 0
	for i := 0; ctx.Err() == nil; i++ {
		live = append(live, startFlappy(t, h))
		set()
		time.Sleep(50 * time.Millisecond)
		old := live[0]
		live = live[1:]
		set()
		if i%2 == 1 {
			resp := []string{"5s", "6s"}[reloads%2]
			reloads++
			if err := px.ctrl.Apply(context.Background(), parse(yml(resp))); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the old instance freed", 6*time.Second, func() bool {
			st, err := px.ctrl.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range st[0].Backends {
				if b.Address == old.addr {
					return false
				}
			}
			return true
		})
		old.shutdown()
	}
	wait()

	total := l.check(t, nil)
	t.Logf("%d requests, %d POSTs, %d reloads", total, len(l.posts), reloads)
}
