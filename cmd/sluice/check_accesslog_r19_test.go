package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: `sluice -check` calls a config valid that sluice then refuses, at
// start (exit 1, "cannot open the access log") and on reload ("config
// reload rejected"): one whose access_log.path cannot be opened (its
// directory missing, as /var/log/sluice is until LogsDirectory= makes it).
// README.md, Quick start: "bin/sluice -check -config sluice.yaml   #
// validate (exit 0) or list every error (exit 1)"; Command line: -check
// is "like `nginx -t`, `haproxy -c`", and `nginx -t` opens the log files
// and fails on one it cannot open. examples/sluice@.service runs -check as
// ExecStartPre, so the unit passes it and then fails in ExecStart.
// run (cmd/sluice/main.go) returns 0 for -check right after loadConfig,
// which does no I/O beyond reading the file; the check should also try
// what start does with the file system (open, without truncating, the
// access log file when enabled and not stdout) and report it as
// access_log.path with the file and line.
func TestCheckRefusesUnopenableAccessLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "missing-dir", "access.log")
	path := writeConfig(t, "listen: "+freePort(t)+"\nadmin: {listen: "+freePort(t)+"}\nwatch_config: false\n"+
		"routes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\n"+
		"access_log: {enabled: true, path: "+logPath+"}\n")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var serveOut bytes.Buffer
	serveCode := run(ctx, []string{"-config", path}, &serveOut, &serveOut)
	if serveCode == 0 {
		t.Fatalf("sluice started with the access log at %s, in a missing directory:\n%s", logPath, serveOut.String())
	}

	var out bytes.Buffer
	if code := run(context.Background(), []string{"-check", "-config", path}, &out, &out); code != 1 {
		t.Errorf("-check exit %d, want 1: sluice itself refuses this config at start (exit %d)\n-check said: %s\nstart said: %s",
			code, serveCode, out.String(), serveOut.String())
	}
	// Named as a config error: file, line and field (README, Configuration).
	for _, said := range []string{out.String(), serveOut.String()} {
		if !strings.Contains(said, path+":6: access_log.path: ") {
			t.Errorf("want the error at %s:6: access_log.path, got:\n%s", path, said)
		}
	}
}
