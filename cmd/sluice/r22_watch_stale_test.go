package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Found by review. What was wrong: a bad edit the watcher tried, then the path made a FIFO (refused:
// "not a config file"), then the same bad edit put back, is never tried
// again: /admin/config keeps saying the path is a FIFO while it is a
// regular file with an unknown field, and the failure is not counted.
// README (Hot reload): the watcher skips "content it tried last (a bad
// file touched again) while nothing else reloaded since"; the FIFO's
// refusal is a reload since (logged "config reload rejected", counted as
// a failure, and it replaced last_reload_error), and a last error is to
// describe the file ("it no longer describes the file"). Cause:
// watchConfig (cmd/sluice/watch.go, the ErrNotConfigFile branch) leaves
// its own lastTried/leftRunning as they were; the refusal does not change
// the running config, so the later round takes the bad bytes for "tried
// last" and skips them.
func TestWatchRetriesBadEditAfterNotConfigFile(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	good := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\n", listen, admin, up.addr)
	path := writeConfig(t, good)
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	lastError := func() string {
		body := getBody(t, "http://"+admin+"/admin/config?format=yaml")
		_, after, ok := strings.Cut(body, "# last_reload_error:")
		if !ok {
			return ""
		}
		line, _, _ := strings.Cut(after, "\n")
		return line
	}
	bad := good + "bogus: 1\n"
	replaceFile(t, path, bad)
	waitUntil(t, "the bad edit's error shows", reloadWait, func() bool { return strings.Contains(lastError(), "bogus") })

	tmp := path + ".fifo"
	if err := syscall.Mkfifo(tmp, 0o600); err != nil {
		t.Fatal("mkfifo:", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the FIFO's refusal shows", reloadWait, func() bool { return strings.Contains(lastError(), "not a config file") })

	replaceFile(t, path, bad)
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(lastError(), "bogus") {
		if time.Now().After(deadline) {
			t.Fatalf("the bad edit is back in the file, but last_reload_error still says %s", lastError())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
