package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestWatchClearsNotConfigFileError: README (Hot reload) says "A
// file put back to the running config after a bad edit clears
// last_reload_error". It did not (found by review) when the bad edit made the path
// something config.ReadFile refuses (ErrNotConfigFile: over 4 MiB, a
// FIFO, a device, a directory): watch.go calls reload() for those without
// setting lastTried, and the settle branch runs only when
// lastTried != nil && lastTried != running. So after the file is put
// back, /admin/config keeps "larger than 4 MiB" / "a FIFO" for a file
// that is now the running config, which is the stale-error state
// 5faebcd set out to end, and nothing is logged.
func TestWatchClearsNotConfigFileError(t *testing.T) {
	for _, bad := range []string{"over 4 MiB", "a FIFO"} {
		t.Run(bad, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen, admin := freePort(t), freePort(t)
			good := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\n", listen, admin, up.addr)
			path := writeConfig(t, good)
			runInProcess(t, path)
			waitReady(t, "http://"+admin+"/readyz")
			hasError := func() bool { return strings.Contains(getBody(t, "http://"+admin+"/admin/config"), "last_reload_error") }

			switch bad {
			case "over 4 MiB":
				replaceFile(t, path, good+"# "+strings.Repeat("x", 4<<20)+"\n")
			case "a FIFO":
				tmp := path + ".fifo"
				if err := syscall.Mkfifo(tmp, 0o600); err != nil {
					t.Skip("mkfifo:", err)
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
