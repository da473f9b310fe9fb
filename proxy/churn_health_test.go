package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

// TestChurnHealthChecked: a health-checked pool (http checks
// every 50 ms) of a stable backend and one that is killed and started
// again on the same port, while reloads change the check's path and
// interval and the pool's algorithm. Every GET must get 200; once the
// flappy backend has been down for a while, requests no longer try it
// (the number of refused connects stays bounded); after its restart it
// takes traffic again.
func TestChurnHealthChecked(t *testing.T) {
	l := newChurnLedger()
	h := churnHandler(l)
	stable, _ := startChurnBackend(t, "stable", h)
	var flappyHits atomic.Int64
	flappy := startFlappy(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/health2" {
			flappyHits.Add(1)
		}
		_, _ = io.WriteString(w, "ok")
	})
	yml := func(i int) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: %s
    health_check: { type: http, path: %s, interval: %s, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1 }
    backends: [{ address: %s }, { address: %s }]
timeouts: { upstream_idle: 30s }
`, []string{"round_robin", "p2c", "least_conn"}[i%3], []string{"/healthz", "/health2"}[i%2],
			[]string{"50ms", "60ms"}[i%2], stable.addr(), flappy.addr)
	}
	px := startProxy(t, yml(0))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	wait := churnLoad(ctx, t, "http://"+px.addr+"/x", l, 4)
	reloads := 0
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for ctx.Err() == nil {
			cfg, err := config.Parse("t.yaml", []byte(yml(reloads)))
			if err != nil {
				t.Error(err)
				return
			}
			_ = px.ctrl.Apply(context.Background(), cfg)
			reloads++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var downHits []int64
	for ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		flappy.kill()
		time.Sleep(300 * time.Millisecond) // the checks take it out
		waitFor(t, "the flappy backend unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, flappy.addr).Healthy })
		time.Sleep(200 * time.Millisecond)
		flappy.restart()
		waitFor(t, "the flappy backend healthy again", 2*time.Second, func() bool { return stateOf(t, px, flappy.addr).Healthy })
		downHits = append(downHits, flappyHits.Load())
	}
	wait()
	<-reloaded

	// Only GETs: a kill may cut a POST it is reading.
	total := l.check(t, func(f churnFailure) bool { return f.method == http.MethodPost })
	t.Logf("%d requests, %d reloads, flappy hits after each restart %v", total, reloads, downHits)
}
