package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a stop (SIGTERM, or the one a supervisor forwards to a worker it is
// restarting) that comes while startup waits for the first DNS lookups
// (disc.waitFirst) makes sluice exit 1 ("cannot listen ... operation was
// canceled"; a worker exits 3 and its supervisor 1) when listen names a
// host, e.g. localhost:8080, which config.CheckAddress accepts: serve then
// calls startListeners with the ended ctx, and net.ListenConfig.Listen
// fails the host's lookup at once. Expected exit 0, as for a stop during
// the first apply (serve.go: "A stop that came during startup ... is a
// clean stop, not a failed start"; TestStopDuringStartupIsClean).
func TestStopDuringFirstLookupWithHostnameListen(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	d := startSlowDNS(t, 2*time.Second)
	_, port, _ := strings.Cut(freePort(t), ":")
	cfg := fmt.Sprintf("listen: localhost:%s\nadmin: {listen: %s}\nwatch_config: false\nroutes: [{pool: p}, {match: {path_prefix: /api/}, pool: api}]\npools:\n  p: {backends: [{address: %s}]}\n  api:\n    discovery: {dns: {name: api.test, port: %d, interval: 10s, resolver: %s}}\n",
		port, freePort(t), up.addr, portOf(t, up.addr), d.addr)
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var log syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, &log) }()
	// The config is applied (its static backend added); the first lookup
	// of the DNS pool takes 2 s, which startup waits for.
	waitUntil(t, "the first apply", 5*time.Second, func() bool { return strings.Contains(log.String(), "backend added") })
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after a stop during the first DNS lookup, want 0\n%s", code, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sluice did not stop")
	}
}
