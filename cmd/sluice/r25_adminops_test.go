package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/proxy"
)

// r25AdminopsCall sends method path (body) to the admin API.
func r25AdminopsCall(t *testing.T, admin, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 8 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// r25AdminopsRow is addr's row in GET /admin/pools.
func r25AdminopsRow(t *testing.T, admin, addr string) proxy.BackendStatus {
	t.Helper()
	code, body := r25AdminopsCall(t, admin, "GET", "/admin/pools", "")
	if code != 200 {
		t.Fatalf("GET /admin/pools = %d %s", code, body)
	}
	var got struct {
		Pools []proxy.PoolStatus `json:"pools"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, p := range got.Pools {
		for _, b := range p.Backends {
			if b.Address == addr && b.Source != "leaving" {
				return b
			}
		}
	}
	t.Fatalf("%s not in /admin/pools: %s", addr, body)
	return proxy.BackendStatus{}
}

// TestAdminopsFileReloadKeepsAndReplaces: through POST
// /admin/reload of an edited file: an admin weight and drain stay over an
// edit of upstream timeouts, the admin weight goes when the file changes
// that backend's weight, the drain stays; during the shutdown that
// follows GET /admin/pools still answers, and drain, undrain, weight and
// reload are refused with 503 and change nothing.
func TestAdminopsFileReloadKeepsAndReplaces(t *testing.T) {
	b1 := startElasticBackend(t, "127.0.0.1:0")
	b2 := startElasticBackend(t, "127.0.0.1:0")
	b3 := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	render := func(extra string, w1 int) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nshutdown_delay: 3s\n%sroutes: [{pool: p}]\npools: {p: {algorithm: round_robin, backends: [{address: %s, weight: %d}, {address: %s}, {address: %s}]}}\n",
			listen, admin, extra, b1.addr, w1, b2.addr, b3.addr)
	}
	path := writeConfig(t, render("", 1))
	stop := runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	if code, body := r25AdminopsCall(t, admin, "PUT", "/admin/pools/p/backends/"+b1.addr+"/weight", `{"weight": 5}`); code != 200 {
		t.Fatalf("PUT weight = %d %s", code, body)
	}
	if code, body := r25AdminopsCall(t, admin, "POST", "/admin/pools/p/backends/"+b2.addr+"/drain", ""); code != 200 {
		t.Fatalf("POST drain = %d %s", code, body)
	}
	reload := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, body := adminReload(t, admin); code != 200 {
			t.Fatalf("POST /admin/reload = %d %s", code, body)
		}
	}
	reload(render("timeouts: {response: 9s}\n", 1))
	if r := r25AdminopsRow(t, admin, b1.addr); r.AdminWeight == nil || *r.AdminWeight != 5 || r.EffectiveWeight != 5 {
		t.Errorf("after a timeouts reload: b1 %+v, want admin weight 5 kept", r)
	}
	if r := r25AdminopsRow(t, admin, b2.addr); !r.AdminDrained {
		t.Errorf("after a timeouts reload: b2 %+v, want drained", r)
	}
	reload(render("timeouts: {response: 9s}\n", 2))
	if r := r25AdminopsRow(t, admin, b1.addr); r.AdminWeight != nil || r.Weight != 2 || r.EffectiveWeight != 2 {
		t.Errorf("after the file changed b1's weight: %+v, want weight 2, no admin weight", r)
	}
	if r := r25AdminopsRow(t, admin, b2.addr); !r.AdminDrained {
		t.Errorf("after a weight reload: b2 %+v, want drained", r)
	}

	stop() // shutdown_delay 3 s follows, the admin API still serving
	waitUntil(t, "readiness off", 3*time.Second, func() bool { return answers("http://"+admin+"/readyz", 503) })
	for _, op := range []struct{ method, path, body string }{
		{"POST", "/admin/pools/p/backends/" + b3.addr + "/drain", ""},
		{"POST", "/admin/pools/p/backends/" + b2.addr + "/undrain", ""},
		{"PUT", "/admin/pools/p/backends/" + b1.addr + "/weight", "7"},
		{"POST", "/admin/reload", ""},
	} {
		if code, body := r25AdminopsCall(t, admin, op.method, op.path, op.body); code != 503 {
			t.Errorf("%s %s during shutdown = %d %s, want 503", op.method, op.path, code, strings.TrimSpace(body))
		}
	}
	r1, r2, r3 := r25AdminopsRow(t, admin, b1.addr), r25AdminopsRow(t, admin, b2.addr), r25AdminopsRow(t, admin, b3.addr)
	if r1.AdminWeight != nil || !r2.AdminDrained || r3.AdminDrained {
		t.Errorf("refused calls changed state: b1 %+v, b2 %+v, b3 %+v", r1, r2, r3)
	}
}
