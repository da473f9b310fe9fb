package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestWatchClearsErrorWhenFilePutBack: a bad edit leaves its error in
// /admin/config; putting the file back to the running config clears it
// (it stayed there, describing a file no longer on disk: found by review).
func TestWatchClearsErrorWhenFilePutBack(t *testing.T) {
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

	replaceFile(t, path, good+"bogus: 1\n")
	waitUntil(t, "the bad edit's error shows", reloadWait, hasError)
	replaceFile(t, path, good)
	waitUntil(t, "the error cleared once the file is the running config again", reloadWait, func() bool { return !hasError() })
}
