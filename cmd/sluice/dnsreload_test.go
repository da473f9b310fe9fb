package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReloadAddingDNSPoolLosesNoRequest: a reload that routes traffic to a
// DNS pool new to the config resolves it first and swaps it in with its
// backends, so no request finds it empty (503) while its watcher's first
// lookup runs.
func TestReloadAddingDNSPoolLosesNoRequest(t *testing.T) {
	static := startElasticBackend(t, "127.0.0.1:0")
	discovered := startElasticBackend(t, "127.0.0.1:0")
	p := portOf(t, discovered.addr)
	d := startSlowDNS(t, 200*time.Millisecond) // every lookup, the watcher's first too
	listen, admin := freePort(t), freePort(t)
	head := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\n", listen, admin)
	path := writeConfig(t, head+fmt.Sprintf("routes: [{pool: static}]\npools:\n  static: {backends: [{address: %s}]}\n", static.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	load := startLoadGen([]string{"http://" + listen + "/"}, 8)
	time.Sleep(200 * time.Millisecond)
	replaceFile(t, path, head+fmt.Sprintf("routes: [{pool: api}]\npools:\n  static: {backends: [{address: %s}]}\n  api:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: 10s, resolver: %s}}\n",
		static.addr, p, d.addr))
	waitUntil(t, "traffic on the discovered backend", reloadWait, func() bool { return discovered.hits.Load() > 50 })
	load.end()
	if n := load.failed.Load(); n > 0 {
		t.Errorf("%d requests failed across the reload (ok %d), e.g. %s", n, load.ok.Load(), strings.Join(load.errs, "; "))
	}
}
