package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestReloadLockNotHeldDuringDNS: a reload that adds a DNS pool resolves
// it (up to 6 s) before it takes the reload lock, so meanwhile an admin
// drain and a graceful stop go ahead at once; the stop also ends an admin
// reload still resolving.
func TestReloadLockNotHeldDuringDNS(t *testing.T) {
	static := startElasticBackend(t, "127.0.0.1:0")
	p := portOf(t, static.addr)
	d := startSlowDNS(t, 3*time.Second)
	listen, admin := freePort(t), freePort(t)
	head := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\n", listen, admin)
	path := writeConfig(t, head+fmt.Sprintf("routes: [{pool: static}]\npools:\n  static: {backends: [{address: %s}]}\n", static.addr))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, io.Discard) }()
	waitReady(t, "http://"+admin+"/readyz")

	replaceFile(t, path, head+fmt.Sprintf("routes: [{pool: static}]\npools:\n  static: {backends: [{address: %s}]}\n  api:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: 10s, resolver: %s}}\n",
		static.addr, p, d.addr))
	go func() {
		if resp, err := http.Post("http://"+admin+"/admin/reload", "", nil); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the reload is resolving
	start := time.Now()
	resp, err := http.Post("http://"+admin+"/admin/pools/static/backends/"+static.addr+"/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("admin drain took %v during a reload's DNS lookup, want it at once", took.Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	go func() {
		if resp, err := http.Post("http://"+admin+"/admin/reload", "", nil); err == nil {
			resp.Body.Close()
		}
	}()
	// The second reload finds nothing new to resolve; a third file adds
	// another DNS pool so that the stop meets a resolving reload.
	time.Sleep(100 * time.Millisecond)
	replaceFile(t, path, head+fmt.Sprintf("routes: [{pool: static}]\npools:\n  static: {backends: [{address: %s}]}\n  api2:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: 9s, resolver: %s}}\n",
		static.addr, p, d.addr))
	go func() {
		if resp, err := http.Post("http://"+admin+"/admin/reload", "", nil); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	cancel() // SIGTERM, shutdown_delay 0
	select {
	case <-exit:
		if took := time.Since(start); took > time.Second {
			t.Errorf("graceful stop (no requests in flight) took %v during a reload's DNS lookup", took.Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sluice did not stop")
	}
}
