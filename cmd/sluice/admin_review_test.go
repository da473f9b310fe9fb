package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAdminReviewReloadDuringShutdown: once shutdown has started (the
// run's context ended, shutdown_delay keeping the admin listener up), a
// POST /admin/reload must be answered 503, as the README says ("503
// while shutting down") and as a drain is then, with no reload failure
// recorded. (Found by review: the reload's context, tied to the serving
// context, was already cancelled, and its context.Canceled was answered
// 400 "reload rejected", as a config rejection.)
func TestAdminReviewReloadDuringShutdown(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nshutdown_delay: 2s\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, admin, up.addr))
	stop := runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	stop() // SIGTERM: shutdown_delay of 2 s follows
	waitUntil(t, "readiness off", 2*time.Second, func() bool { return answers("http://"+admin+"/readyz", 503) })
	c := &http.Client{Timeout: 5 * time.Second}
	// Which error the reload meets depends on whether the goroutine that
	// cancels its context has run yet: ask a few times within the delay.
	for i := range 20 {
		resp, err := c.Post("http://"+admin+"/admin/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("POST /admin/reload #%d during shutdown = %d %s, want 503 (README: 503 while shutting down)", i+1, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdminReviewConcurrentWithReloads: drains, undrains, weights, pool
// and config reads through the admin API while admin reloads and SIGHUP-
// style reloads run; under -race this checks the admin/reload paths
// share no unguarded state. Afterwards the runtime changes that were last
// made are what /admin/pools shows (reloads with an unchanged file keep
// them). Covers concurrency no existing test drives.
func TestAdminReviewConcurrentWithReloads(t *testing.T) {
	b1 := startElasticBackend(t, "127.0.0.1:0")
	b2 := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}, {address: %s}]}}\n",
		listen, admin, b1.addr, b2.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	c := &http.Client{Timeout: 10 * time.Second}
	do := func(method, p, body string) int {
		req, _ := http.NewRequest(method, "http://"+admin+p, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(1500 * time.Millisecond)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				var code int
				switch (i + n) % 5 {
				case 0:
					code = do("POST", "/admin/reload", "")
				case 1:
					code = do("POST", "/admin/pools/p/backends/"+b1.addr+"/drain", "")
				case 2:
					code = do("PUT", "/admin/pools/p/backends/"+b2.addr+"/weight", `{"weight": 7}`)
				case 3:
					code = do("GET", "/admin/config", "")
				case 4:
					code = do("GET", "/admin/pools", "")
				}
				if code != 200 {
					t.Errorf("admin call %d: status %d, want 200", (i+n)%5, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	pools := getBody(t, "http://"+admin+"/admin/pools")
	if !strings.Contains(pools, `"admin_weight": 7`) || !strings.Contains(pools, `"admin_drained": true`) {
		t.Errorf("runtime changes lost across reloads of an unchanged file:\n%s", pools)
	}
}
