package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestDNSPoolServedOnceResolved: sluice listens only once the first lookup
// of each DNS pool has ended, so the first request it takes is not a 503
// for an empty pool, and a process taking over a port is not ready with
// nothing to send to.
func TestDNSPoolServedOnceResolved(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	p := portOf(t, up.addr)
	d := startSlowDNS(t, 400*time.Millisecond)
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: api}]\npools:\n  api:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: 10s, resolver: %s}}\n",
		listen, admin, p, d.addr))
	runInProcess(t, path)

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("sluice not serving 10s after start: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("first request served = %d, want 200: the DNS pool was served before its first lookup", resp.StatusCode)
		}
		break
	}
}
