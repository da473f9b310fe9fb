package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestConfigReviewInvalidReloadKeepsAll: a reload whose file changes
// listen, timeouts, limits, forwarding and the backends, and is invalid
// only in its last field, is refused with file, line and field path, and
// keeps the running config exactly: the same config tree, generation and
// load time in /admin/config, the same backends, no new listener, the old
// one serving. New coverage: TestReloadInProcess checks only the pools
// after an invalid file, TestReloadAllOrNothing a failure after
// validation (the access log).
func TestConfigReviewInvalidReloadKeepsAll(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
	good := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen1, admin, up1.addr)
	path := writeConfig(t, good)
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	type info struct {
		Generation float64        `json:"generation"`
		LoadedAt   string         `json:"loaded_at"`
		Config     map[string]any `json:"config"`
		LastError  map[string]any `json:"last_reload_error"`
	}
	getInfo := func() info {
		var in info
		if err := json.Unmarshal([]byte(getBody(t, "http://"+admin+"/admin/config")), &in); err != nil {
			t.Fatal(err)
		}
		return in
	}
	before := getInfo()
	if len(before.Config) == 0 || before.Generation != 1 {
		t.Fatalf("/admin/config before the reload: generation %v, config %v", before.Generation, before.Config)
	}
	poolsBefore := getBody(t, "http://"+admin+"/admin/pools")

	bad := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n"+
		"timeouts: {connect: 1s, response: 5s, idle: 10s}\nlimits: {max_body_bytes: 1024}\n"+
		"forwarding: {x_forwarded_for: replace}\nroutes: [{pool: p}, {pool: q, match: {path_prefix: /q/}}]\npools:\n"+
		"  p:\n    algorithm: round_robin\n    backends:\n      - {address: %s}\n      - {address: %s}\n"+
		"  q:\n    backends: [{address: %s}]\nretries: {attempts: 0}\n", listen2, admin, up1.addr, up2.addr, up2.addr)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := path + ":17: retries.attempts: must be from 1 to 10"; resp.StatusCode != 400 || !strings.Contains(string(body), want) {
		t.Errorf("POST /admin/reload = %d %s, want 400 containing %q", resp.StatusCode, body, want)
	}

	after := getInfo()
	if after.Generation != before.Generation || after.LoadedAt != before.LoadedAt {
		t.Errorf("generation/loaded_at %v/%s -> %v/%s, want unchanged", before.Generation, before.LoadedAt, after.Generation, after.LoadedAt)
	}
	if !reflect.DeepEqual(after.Config, before.Config) {
		t.Errorf("running config changed by a refused reload:\nbefore %v\nafter  %v", before.Config, after.Config)
	}
	if after.LastError == nil {
		t.Error("no last_reload_error after a refused reload")
	}
	if p := getBody(t, "http://"+admin+"/admin/pools"); strings.Contains(p, up2.addr) || strings.Contains(p, `"q"`) {
		t.Errorf("refused reload changed the pools:\nbefore %s\nafter  %s", poolsBefore, p)
	}
	if c, err := net.DialTimeout("tcp", listen2, 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("refused reload opened the new listener")
	}
	if !answers("http://"+listen1+"/", 200) {
		t.Error("old listener stopped serving after the refused reload")
	}
}
