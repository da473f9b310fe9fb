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
// does not stop the startup: serve goes on to open the listeners (an IP
// listen address binds whatever ctx says), logs "sluice started", serves,
// and then runs the whole graceful shutdown, shutdown_delay included. So
// `systemctl stop` during a slow start takes shutdown_delay more, with
// the port bound and accepting meanwhile. README ("Command line and
// signals"): SIGTERM exits 0 "also when the signal comes during startup,
// before anything was served"; serve.go's startFailed: "nothing was
// served, so nothing drains". Expected: run returns at once, without
// "sluice started"; actual: it returns after shutdown_delay (here 30 s).
func TestStopDuringFirstLookupSkipsShutdownDelay(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	d := startSlowDNS(t, 2*time.Second)
	cfg := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nshutdown_delay: 30s\nlog: {level: info, format: json}\n"+
		"routes: [{pool: p}, {match: {path_prefix: /api/}, pool: api}]\npools:\n  p: {backends: [{address: %s}]}\n"+
		"  api:\n    discovery: {dns: {name: api.test, port: %d, interval: 10s, resolver: %s}}\n",
		freePort(t), freePort(t), up.addr, portOf(t, up.addr), d.addr)
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, &log) }()
	// The static pool is applied; the DNS pool's first lookup takes 2 s,
	// which startup waits for: the stop comes during that wait.
	waitUntil(t, "the first apply", 5*time.Second, func() bool { return strings.Contains(log.String(), "backend added") })
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case code := <-exit:
		took := time.Since(start)
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
		if took > 15*time.Second || strings.Contains(log.String(), "sluice started") {
			t.Errorf("a stop during startup took %v (shutdown_delay 30s); started anyway: %v\n%s",
				took.Round(10*time.Millisecond), strings.Contains(log.String(), "sluice started"), log.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatal("sluice did not stop")
	}
}
