package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Found by review. What was wrong: under -workers, nothing warns that net.ipv4.tcp_migrate_req is 0,
// even with listen_reuseport: true in the file. startListeners
// (serve.go, "cfg.ListenReusePort && a.opts.override == nil") skips
// warnNoMigrate in every worker, and supervise (workers.go) never calls
// it. README ("Zero-downtime restart and shutdown"): "sluice logs a
// warning at start when listen_reuseport is set and it is 0 (or the
// kernel lacks it)", and the binary upgrade it describes (a second sluice
// on the same port, then SIGTERM to the old one) is the same with two
// supervisors; a crashed worker's queued connections are reset the same
// way too. Expected: one warning (from the supervisor, which has the
// file before the workers' override); actual: none.
func TestWorkersWarnNoMigrate(t *testing.T) {
	// Where the kernel migrates queued connections there is nothing to
	// warn about: then no warning is wanted.
	b, err := os.ReadFile(migrateReqPath)
	wantWarning := err != nil || strings.TrimSpace(string(b)) == "0"
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, workersConfig(listen, adminPort, up.addr, "listen_reuseport: true\n"))
	_, stderr := startSupervisor(t, path, 1)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	// The supervisor warns before it starts the worker that just said
	// it is ready: its log is complete.
	if got := strings.Contains(stderr.String(), "tcp_migrate_req"); got != wantWarning {
		t.Errorf("-workers 1 with listen_reuseport: true and %s %q: warned %v, want %v\n%s",
			migrateReqPath, strings.TrimSpace(string(b)), got, wantWarning, stderr.String())
	}
}
