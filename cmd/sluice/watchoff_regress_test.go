package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestStoppedWatcherDoesNotReload: an edit turns watch_config off and an
// admin reload (slow: it resolves a new DNS pool, 1.5 s) applies it while
// the file watcher, which saw the same edit, waits to reload. The admin
// reload stops the watcher; the watcher's waiting reload must then do
// nothing: no second reload, no failure left in /admin/config.
func TestStoppedWatcherDoesNotReload(t *testing.T) {
	static := startElasticBackend(t, "127.0.0.1:0")
	p := portOf(t, static.addr)
	d := startSlowDNS(t, 1500*time.Millisecond)
	listen, admin := freePort(t), freePort(t)
	head := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\n", listen, admin)
	pools := fmt.Sprintf("routes: [{pool: static}]\npools:\n  static: {backends: [{address: %s}]}\n", static.addr)
	path := writeConfig(t, head+"watch_config: true\n"+pools)
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	replaceFile(t, path, head+"watch_config: false\n"+pools+fmt.Sprintf("  api:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: 10s, resolver: %s}}\n", p, d.addr))
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(2 * time.Second) // whatever the stopped watcher does, done
	var info struct {
		Generation int `json:"generation"`
		LastError  *struct {
			Error string `json:"error"`
		} `json:"last_reload_error"`
	}
	if err := json.Unmarshal([]byte(getBody(t, "http://"+admin+"/admin/config")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Generation != 2 || info.LastError != nil {
		t.Errorf("after one reload turning watch_config off: generation %d, last reload error %+v; want generation 2 and no error (the stopped watcher reloaded)",
			info.Generation, info.LastError)
	}
}
