package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTogglesLeakNothing: SIGHUP reloads of the real process that
// turn what the other leak tests keep fixed on and off — watch_config
// (an inotify descriptor and a goroutine each), the access log (on, off,
// another path), the admin listener (moved, turned off, back) — with a
// SIGUSR1 log reopen after each, leave the process's goroutines and
// descriptors where they were.
func TestTogglesLeakNothing(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin, admin2 := freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	render := func(i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %s\nlog: {level: info, format: json}\nshutdown_timeout: 2s\n", listen)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "admin: {listen: %s}\n", admin)
		case 1:
			fmt.Fprintf(&b, "admin: {listen: %s}\n", admin2)
		case 2:
			b.WriteString("admin: {listen: \"\"}\n")
		}
		fmt.Fprintf(&b, "watch_config: %v\n", i%2 == 0)
		switch i % 4 {
		case 1:
			fmt.Fprintf(&b, "access_log: {enabled: true, path: %s}\n", filepath.Join(dir, "a.log"))
		case 2:
			fmt.Fprintf(&b, "access_log: {enabled: true, path: %s}\n", filepath.Join(dir, "b.log"))
		}
		fmt.Fprintf(&b, "routes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", up.addr)
		return b.String()
	}
	path := writeConfig(t, render(0))
	p := startSluice(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	traffic := func() {
		if resp, err := http.Get("http://" + listen + "/"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	traffic()
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	g0, fds0 := r21Goroutines(t, p), openFDs(t, p.cmd.Process.Pid)
	gen := 1 // each reload's generation, read on an admin listener that is on
	for i := 1; i <= 24; i++ {
		replaceFile(t, path, render(i))
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		gen++
		// Each reload is waited for in the log (the admin listener is
		// off in a third of them): a SIGHUP sent during a reload could
		// be folded into it.
		waitUntil(t, fmt.Sprintf("reload %d", i), 10*time.Second, func() bool {
			return strings.Count(p.stderr.String(), `"config reloaded"`) >= i
		})
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
		traffic()
	}
	replaceFile(t, path, render(0))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the last reload", 10*time.Second, func() bool { return configGeneration(admin) >= gen+1 })
	traffic()
	http.DefaultClient.CloseIdleConnections()
	var g, fds int
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if g, fds = r21Goroutines(t, p), openFDs(t, p.cmd.Process.Pid); g <= g0+2 && fds <= fds0+2 {
			break
		}
	}
	t.Logf("goroutines %d -> %d, descriptors %d -> %d", g0, g, fds0, fds)
	if g > g0+3 || fds > fds0+3 {
		t.Errorf("after 25 reloads: %d goroutines (%d before), %d descriptors (%d before)", g, g0, fds, fds0)
	}
	if s := p.stderr.String(); strings.Contains(s, `"level":"error"`) {
		t.Errorf("errors logged:\n%s", grepLines(s, `"level":"error"`))
	}
}

// r21Goroutines is p's goroutine count less fasthttp's idle-worker
// sweepers, which a stopped server leaves for up to 10 s (they end on
// their own).
func r21Goroutines(t *testing.T, p *sluiceProc) int {
	t.Helper()
	resp, err := http.Get("http://" + p.pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return r21Count(t, string(body))
}

func r21Count(t *testing.T, profile string) int {
	t.Helper()
	n := 0
	for _, block := range strings.Split(profile, "\n\n") {
		var k int
		if _, err := fmt.Sscanf(block, "%d @", &k); err != nil {
			continue
		}
		if strings.Contains(block, "workerPool).Start.func2") {
			continue
		}
		n += k
	}
	return n
}
