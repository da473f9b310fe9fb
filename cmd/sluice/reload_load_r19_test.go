package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// r18ReloadRender renders variant i of a config that changes, from one
// variant to the next, what the controller rebuilds: weights, the
// algorithm, backends added and removed, upstream timeouts and limits
// (a new client per backend), routes, retries, health checks and
// outlier detection.
func r18ReloadRender(listen, admin string, ups []*elasticBackend, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\ndrain_timeout: 2s\n", listen, admin)
	fmt.Fprintf(&b, "timeouts: {connect: %dms, response: %dms, upstream_idle: %ds}\n", 1000+i%4, 5000+i%3, 30+i%2)
	fmt.Fprintf(&b, "limits: {max_conns_per_backend: %d}\n", 64+i%5)
	fmt.Fprintf(&b, "retries: {attempts: %d}\n", 1+i%3)
	b.WriteString("routes:\n  - {pool: web}\n")
	if i%2 == 1 {
		b.WriteString("  - {match: {path_prefix: /other/}, pool: other}\n")
	}
	algos := []string{"round_robin", "p2c", "least_conn", "random", "ewma", "ring_hash", "maglev"}
	fmt.Fprintf(&b, "pools:\n  web:\n    algorithm: %s\n", algos[i%len(algos)])
	if a := algos[i%len(algos)]; a == "ring_hash" || a == "maglev" {
		b.WriteString("    hash_key: path\n")
	}
	if i%3 == 1 {
		b.WriteString("    slow_start: 1s\n")
	}
	if i%4 == 2 {
		b.WriteString("    health_check: {type: http, path: /h, interval: 100ms}\n")
	}
	if i%4 == 3 {
		b.WriteString("    outlier_detection: {consecutive_failures: 3}\n")
	}
	b.WriteString("    backends:\n")
	for j, u := range ups {
		if (i+j)%4 == 3 {
			continue // one backend in four left out, a different one each time
		}
		fmt.Fprintf(&b, "      - {address: %s, weight: %d}\n", u.addr, 1+(i+j)%3)
	}
	if i%2 == 1 {
		fmt.Fprintf(&b, "  other: {backends: [{address: %s}]}\n", ups[0].addr)
	}
	return b.String()
}

// TestReloadsUnderStrictLoad: 40 reloads through POST
// /admin/reload, each changing what the controller rebuilds, under 6
// keep-alive connections busy with back-to-back POSTs (which no client
// may send again), and an invalid file now and then. Every request
// written must get a 200. The clients are raw, so no failure is hidden
// by a retry of net/http (TestChangingReloadStormUnderLoad uses its GETs).
// (passes: no request lost)
func TestReloadsUnderStrictLoad(t *testing.T) {
	ups := []*elasticBackend{startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0"),
		startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0")}
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, r18ReloadRender(listen, admin, ups, 0))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	clients := &busyClients{}
	clients.addr.Store(&listen)
	ctx, stop := context.WithCancel(context.Background())
	wait := clients.run(ctx, 6)
	defer func() { stop(); wait() }()
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 100 })
	for i := 1; i <= 40; i++ {
		text := r18ReloadRender(listen, admin, ups, i)
		bad := i%10 == 5
		if bad {
			text += "  broken: {backends: [{address: nowhere}]}\n"
		}
		replaceFile(t, path, text)
		code, body := adminReload(t, admin)
		if bad != (code == http.StatusBadRequest) || !bad && code != 200 {
			t.Fatalf("reload %d = %d %s", i, code, body)
		}
		time.Sleep(60 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wait()
	if n := clients.lost.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across 40 reloads, e.g.\n%s", n, clients.answered.Load()+n, strings.Join(clients.losses, "\n"))
	}
	t.Logf("%d requests answered", clients.answered.Load())
}
