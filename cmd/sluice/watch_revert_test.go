package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWatchAppliesRevertAfterOtherReload: an edit to A (the watcher
// applies it), an edit to B followed at once by POST /admin/reload (B
// runs; the watcher then finds B running and tries nothing), and an edit
// back to A: the watcher applies A again, since another reload changed
// the running config after it last tried those bytes. (Found by review:
// it skipped any bytes equal to the last it had tried, and B kept running
// with no error anywhere.)
func TestWatchAppliesRevertAfterOtherReload(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	render := func(backends ...string) string {
		s := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n", listen, admin)
		for _, b := range backends {
			s += fmt.Sprintf("      - {address: %s}\n", b)
		}
		return s
	}
	path := writeConfig(t, render(up1.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	hasUp2 := func() bool { return strings.Contains(getBody(t, "http://"+admin+"/admin/pools"), up2.addr) }

	a, b := render(up1.addr, up2.addr), render(up1.addr)
	replaceFile(t, path, a)
	waitUntil(t, "the watcher applied A", reloadWait, hasUp2)

	replaceFile(t, path, b)
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /admin/reload = %d %s", resp.StatusCode, body)
	}
	// up2 is listed as leaving until its drain ends (a tick).
	waitUntil(t, "B running, up2 drained", reloadWait, func() bool { return !hasUp2() })
	// Past the watcher's debounce for the edit to B.
	time.Sleep(time.Second)

	replaceFile(t, path, a)
	deadline := time.Now().Add(5 * time.Second)
	for !hasUp2() {
		if time.Now().After(deadline) {
			t.Fatal("the file was put back to A 5 s ago, but B still runs: the watcher skipped it (A was the last content it tried itself)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
