package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestWatchClearsErrorWhenFilePutBack: a bad edit leaves its error in
// /admin/config; putting the file back to the running config clears it
// (it stayed there, describing a file no longer on disk: found by review).
// Also when the bad edit made the path something config.ReadFile refuses
// (over 4 MiB, a FIFO): the first version of the clear ran only after a
// reload of content the watcher had read itself (found by a second
// review).
func TestWatchClearsErrorWhenFilePutBack(t *testing.T) {
	for _, bad := range []string{"unknown field", "over 4 MiB", "a FIFO"} {
		t.Run(bad, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen, admin := freePort(t), freePort(t)
			good := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\n", listen, admin, up.addr)
			path := writeConfig(t, good)
			runInProcess(t, path)
			waitReady(t, "http://"+admin+"/readyz")
			hasError := func() bool { return strings.Contains(getBody(t, "http://"+admin+"/admin/config"), "last_reload_error") }
			if hasError() {
				t.Fatal("a reload error before any reload")
			}

			switch bad {
			case "unknown field":
				replaceFile(t, path, good+"bogus: 1\n")
			case "over 4 MiB":
				replaceFile(t, path, good+"# "+strings.Repeat("x", 4<<20)+"\n")
			case "a FIFO":
				tmp := path + ".fifo"
				if err := syscall.Mkfifo(tmp, 0o600); err != nil {
					t.Fatal("mkfifo:", err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "the bad edit's error shows", reloadWait, hasError)
			replaceFile(t, path, good)
			waitUntil(t, "the error cleared once the file is the running config again", reloadWait, func() bool { return !hasError() })
		})
	}
}
