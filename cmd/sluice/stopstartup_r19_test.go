package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestStopDuringFirstLookup: a stop (SIGTERM, or the one a supervisor
// forwards to a worker it is restarting) that comes while startup waits
// for the first DNS lookups (disc.waitFirst) is a clean stop before
// serving: exit 0 at once, nothing served, shutdown_delay not waited out
// (README, signals: "exit 0 (also when the signal comes during startup,
// before anything was served)"). Found by review, twice. What was wrong:
// with a listen that names a host (localhost:8080, which
// config.CheckAddress accepts), serve called startListeners with the
// ended ctx, the host's lookup failed at once and sluice exited 1
// ("cannot listen ... operation was canceled"; a worker 3, its supervisor
// 1); with an IP address it bound the port, logged "sluice started",
// served, and drained for the whole shutdown_delay (30 s here).
func TestStopDuringFirstLookup(t *testing.T) {
	for _, tt := range []struct {
		name   string
		listen func(port string) string
	}{
		{"hostname listen", func(port string) string { return "localhost:" + port }},
		{"address listen", func(port string) string { return "127.0.0.1:" + port }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			d := startSlowDNS(t, 2*time.Second)
			_, port, _ := strings.Cut(freePort(t), ":")
			cfg := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nshutdown_delay: 30s\n"+
				"routes: [{pool: p}, {match: {path_prefix: /api/}, pool: api}]\npools:\n  p: {backends: [{address: %s}]}\n"+
				"  api:\n    discovery: {dns: {name: api.test, port: %d, interval: 10s, resolver: %s}}\n",
				tt.listen(port), freePort(t), up.addr, portOf(t, up.addr), d.addr)
			path := writeConfig(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var log syncBuffer
			exit := make(chan int, 1)
			go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, &log) }()
			// The config is applied (its static backend added); the first
			// lookup of the DNS pool takes 2 s, which startup waits for.
			waitUntil(t, "the first apply", 5*time.Second, func() bool { return strings.Contains(log.String(), "backend added") })
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case code := <-exit:
				if code != 0 {
					t.Errorf("exit %d after a stop during the first DNS lookup, want 0\n%s", code, log.String())
				}
				// Not a timing bound: a stop that served would wait out
				// shutdown_delay, 30 s.
				if took := time.Since(start); took > 15*time.Second || strings.Contains(log.String(), "sluice started") {
					t.Errorf("a stop during startup took %v; served anyway: %v\n%s",
						took.Round(10*time.Millisecond), strings.Contains(log.String(), "sluice started"), log.String())
				}
			case <-time.After(45 * time.Second):
				t.Fatal("sluice did not stop")
			}
		})
	}
}
