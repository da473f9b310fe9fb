package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGUSR1ReopensAccessLog: logrotate moves the file away and sends
// SIGUSR1; the next lines go to a new file at the configured path.
func TestSIGUSR1ReopensAccessLog(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	listen, admin := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n"+
		"access_log: {enabled: true, path: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, admin, logPath, up.addr))
	p := startSluice(t, cfg)
	waitReady(t, "http://"+admin+"/readyz")
	hit := func(path string) {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	contains := func(file, s string) func() bool {
		return func() bool {
			b, err := os.ReadFile(file)
			return err == nil && strings.Contains(string(b), s)
		}
	}
	hit("/before-rotation")
	waitUntil(t, "first line written", 2*time.Second, contains(logPath, "/before-rotation"))
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "log reopened at the path", 2*time.Second, func() bool {
		_, err := os.Stat(logPath)
		return err == nil
	})
	hit("/after-rotation")
	waitUntil(t, "new line in the new file", 2*time.Second, contains(logPath, "/after-rotation"))
	if contains(rotated, "/after-rotation")() {
		t.Error("line after rotation went to the rotated file")
	}
}
