package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWatchConfigFollowsReloads: watch_config turned off by a reload stops
// the file watcher (the next edit is not applied), and turned on again by
// a reload (here POST /admin/reload) starts it.
func TestWatchConfigFollowsReloads(t *testing.T) {
	listen, admin := freePort(t), freePort(t)
	render := func(watch bool, backend string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: %v\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", listen, admin, watch, backend)
	}
	path := writeConfig(t, render(true, "127.0.0.1:9001"))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	pools := func() string { return getBody(t, "http://"+admin+"/admin/pools") }

	replaceFile(t, path, render(false, "127.0.0.1:9002"))
	waitUntil(t, "the edit turning watch_config off applied", reloadWait, func() bool { return strings.Contains(pools(), "127.0.0.1:9002") })

	replaceFile(t, path, render(false, "127.0.0.1:9003"))
	time.Sleep(time.Second) // four debounce periods
	if p := pools(); !strings.Contains(p, "127.0.0.1:9002") || strings.Contains(p, "127.0.0.1:9003") {
		t.Fatalf("an edit was applied with watch_config off:\n%s", p)
	}

	replaceFile(t, path, render(true, "127.0.0.1:9004"))
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(pools(), "127.0.0.1:9004") {
		t.Fatalf("POST /admin/reload did not apply the file: %d", resp.StatusCode)
	}
	replaceFile(t, path, render(true, "127.0.0.1:9005"))
	waitUntil(t, "an edit applied once watch_config is on again", reloadWait, func() bool { return strings.Contains(pools(), "127.0.0.1:9005") })
}
