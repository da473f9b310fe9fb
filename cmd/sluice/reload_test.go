package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadWait bounds each wait for a reload's effect. A reload takes the
// watcher's 250 ms debounce and a few milliseconds; the bound is generous
// because make test runs every package at once under the race detector,
// where one wait once took over 3 s.
const reloadWait = 10 * time.Second

// TestReloadInProcess drives the reload paths of a running sluice: the
// file watcher (on by default), an invalid file, a listener move, and
// POST /admin/reload.
func TestReloadInProcess(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
	render := func(listen string, backends ...string) string {
		s := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n", listen, admin)
		for _, b := range backends {
			s += fmt.Sprintf("      - {address: %s}\n", b)
		}
		return s
	}
	path := writeConfig(t, render(listen1, up1.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	adminGet := func(p string) string { return getBody(t, "http://"+admin+p) }
	write := func(text string) {
		// Replace by rename, as editors do: the watcher must survive it.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}

	write(render(listen1, up1.addr, up2.addr))
	waitUntil(t, "file change picked up", reloadWait, func() bool { return strings.Contains(adminGet("/admin/pools"), up2.addr) })

	write("routes: [{pool: nope}]\n")
	waitUntil(t, "invalid file reported", reloadWait, func() bool { return strings.Contains(adminGet("/admin/config"), "last_reload_error") })
	if !strings.Contains(adminGet("/admin/pools"), up2.addr) {
		t.Error("invalid file changed the running pools")
	}

	write(render(listen2, up1.addr, up2.addr))
	waitUntil(t, "listener moved", reloadWait, func() bool { return answers("http://"+listen2+"/", 200) })
	waitUntil(t, "old listener closed", reloadWait, func() bool {
		c, err := net.DialTimeout("tcp", listen1, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})

	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"generation"`) {
		t.Errorf("POST /admin/reload = %d %s, want 200 with the generation", resp.StatusCode, body)
	}
	if m := adminGet("/metrics"); !strings.Contains(m, `sluice_config_reloads_total{result="failure"} 1`) {
		t.Errorf("metrics do not count the failed reload:\n%s", grepLines(m, "sluice_config_reloads_total"))
	}
	// The start is generation 1 and not a reload: every later generation is.
	m := adminGet("/metrics")
	var gen, ok float64
	for _, line := range strings.Split(m, "\n") {
		if v, found := strings.CutPrefix(line, "sluice_config_generation "); found {
			fmt.Sscan(v, &gen)
		}
		if v, found := strings.CutPrefix(line, `sluice_config_reloads_total{result="success"} `); found {
			fmt.Sscan(v, &ok)
		}
	}
	if gen < 2 || ok != gen-1 {
		t.Errorf("successful reloads = %v at generation %v, want generation-1 (the start is no reload)", ok, gen)
	}
}

// runInProcess runs sluice on the config file at path in this process
// until the test ends, or until the returned func starts its graceful
// stop (SIGTERM's), and then checks that it stops within 10 s.
func runInProcess(t *testing.T, path string) (stop func()) {
	t.Helper()
	return runInProcessLog(t, path, io.Discard)
}

// runInProcessLog is runInProcess with the process log written to stderr.
func runInProcessLog(t *testing.T, path string, stderr io.Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", path}, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exit:
		case <-time.After(10 * time.Second):
			t.Error("sluice did not stop")
		}
	})
	return cancel
}

// adminReload posts /admin/reload to the admin API at admin and returns
// the status and body; a failed request fails the test.
func adminReload(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// getBody GETs url and returns the body; a failed request fails the test.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadAllOrNothing: a reload whose last step fails (the access log
// cannot be opened) must leave listeners and pools as they were, and the
// next good reload must succeed.
func TestReloadAllOrNothing(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
	render := func(listen, extra string, backends ...string) string {
		s := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n", listen, admin)
		for _, b := range backends {
			s += fmt.Sprintf("      - {address: %s}\n", b)
		}
		return s + extra
	}
	path := writeConfig(t, render(listen1, "", up1.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	reload := func() int {
		code, _ := adminReload(t, admin)
		return code
	}
	pools := func() string { return getBody(t, "http://"+admin+"/admin/pools") }

	bad := render(listen2, "access_log: {enabled: true, path: /nonexistent-dir/access.log}\n", up1.addr, up2.addr)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := reload(); code != 400 {
		t.Errorf("reload with an unopenable access log = %d, want 400", code)
	}
	if strings.Contains(pools(), up2.addr) {
		t.Error("the rejected reload added a backend")
	}
	if c, err := net.DialTimeout("tcp", listen2, 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("the rejected reload left the new listener open")
	}
	if resp, err := http.Get("http://" + listen1 + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("old listener after the rejected reload: %v", err)
	} else {
		resp.Body.Close()
	}

	if err := os.WriteFile(path, []byte(render(listen2, "", up1.addr, up2.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := reload(); code != 200 {
		t.Fatalf("fixed reload = %d, want 200", code)
	}
	if !strings.Contains(pools(), up2.addr) {
		t.Error("fixed reload did not add the backend")
	}
	waitUntil(t, "new listener serving", 2*time.Second, func() bool { return answers("http://"+listen2+"/", 200) })
}

// TestReloadRefusesFIFO: a config path swapped for a FIFO (whose open and
// read would wait for a writer, with the reload lock held) is refused at
// once, by the watcher and by POST /admin/reload; the running config keeps
// serving, and sluice still stops when told (runInProcess checks).
func TestReloadRefusesFIFO(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nroutes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen, admin, up.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	adminConfig := func() string { return getBody(t, "http://"+admin+"/admin/config") }
	waitUntil(t, "the watcher's reload refused the FIFO", reloadWait, func() bool {
		return strings.Contains(adminConfig(), "a FIFO")
	})
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "a FIFO") {
		t.Errorf("POST /admin/reload = %d %s, want an error naming the FIFO", resp.StatusCode, body)
	}
	if !answers("http://"+listen+"/", 200) {
		t.Error("the running config stopped serving")
	}
}
