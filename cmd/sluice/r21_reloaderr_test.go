package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// Found by review. What was wrong: a reload whose new listen or admin.listen cannot be bound (the port
// is taken) is rejected with "listen 127.0.0.1:P: listen tcp ...: bind:
// address already in use" or "admin listen 127.0.0.1:P: ...": no file, no
// line, and not the field's name (admin.listen), in the log, in the
// POST /admin/reload answer and in /admin/config's last_reload_error.
// README (Hot reload): a rejected reload's "error is logged with file,
// line and field"; the same stage step places an access log that cannot
// be opened at access_log.path's line (cfg.At), as every config error is
// placed. Expected "FILE:1: listen: ..." and "FILE:2: admin.listen: ...".
// serve.go:stage returns fmt.Errorf("listen %s: %w") and
// fmt.Errorf("admin listen %s: %w") instead of cfg.At("listen", err) and
// cfg.At("admin.listen", err).
func TestReloadListenErrorPlaced(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	listen, admin := freePort(t), freePort(t)
	render := func(listen, admin string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
			listen, admin, up.addr)
	}
	path := writeConfig(t, render(listen, admin))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	for _, tc := range []struct{ text, want string }{
		{render(taken.Addr().String(), admin), path + ":1: listen: "},
		{render(listen, taken.Addr().String()), path + ":2: admin.listen: "},
	} {
		replaceFile(t, path, tc.text)
		code, body := adminReload(t, admin)
		if code == 200 {
			t.Fatalf("reload onto a taken port = 200 %s", body)
		}
		if !strings.Contains(body, tc.want) {
			t.Errorf("reload onto a taken port: %d %s\nwant the error placed as %q", code, strings.TrimSpace(body), tc.want+"...")
		}
		if cfg := getBody(t, "http://"+admin+"/admin/config"); !strings.Contains(cfg, tc.want) {
			t.Errorf("last_reload_error does not place the error as %q:\n%s", tc.want+"...", grepLines(cfg, "last_reload_error"))
		}
	}
	if !answers("http://"+listen+"/", 200) {
		t.Error("the running listener stopped serving")
	}
}
