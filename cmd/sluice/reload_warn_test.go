package main

import (
	"fmt"
	"strings"
	"testing"
)

// Found by review. What was wrong: README (Hot reload) says client-side settings (timeouts.client_*,
// limits.max_*_bytes, limits.max_client_conns) "apply to new listeners
// only: change listen or restart to apply them (sluice logs a warning)".
// serve.go stage() checks them in an else-if chain after
// listen_reuseport: a reload that changes listen_reuseport and, say,
// timeouts.client_read logs only "listen_reuseport changes need a
// restart" and never the client-settings warning, although client_read
// is not applied either; /admin/config then shows a client_read that is
// not in force, which is what the warning exists to flag. Expected: each
// warning on its own (two independent ifs, both under "listener kept").
func TestReloadWarnsClientSettingsWithReuseport(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	render := func(reuse bool, clientRead string) string {
		return fmt.Sprintf("listen: %s\nlisten_reuseport: %v\nadmin: {listen: %s}\nwatch_config: false\nlog: {format: json}\n"+
			"timeouts: {client_read: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
			listen, reuse, admin, clientRead, up.addr)
	}
	path := writeConfig(t, render(false, "30s"))
	stderr := &syncBuffer{}
	runInProcessLog(t, path, stderr)
	waitReady(t, "http://"+admin+"/readyz")

	// Control: client_read alone warns.
	replaceFile(t, path, render(false, "5s"))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	const warn = "client timeouts and limits apply to new listeners only"
	if n := strings.Count(stderr.String(), warn); n != 1 {
		t.Fatalf("after a reload of client_read alone: %d warnings, want 1\n%s", n, stderr)
	}

	// listen_reuseport and client_read (5s to 10s) together: both
	// warnings are due.
	replaceFile(t, path, render(true, "10s"))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	if !strings.Contains(stderr.String(), "listen_reuseport changes need a restart") {
		t.Fatalf("no listen_reuseport warning:\n%s", stderr)
	}
	if n := strings.Count(stderr.String(), warn); n != 2 {
		t.Errorf("a reload that changed listen_reuseport and timeouts.client_read (5s to 10s) warned %d times in all about client settings, want 2 (one per reload that changed them):\n%s", n, stderr)
	}
}
