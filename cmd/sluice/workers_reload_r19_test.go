package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkersReloadStormStrictLoad: `sluice -workers 2` with
// watch_config on, under 8 keep-alive connections busy with POSTs: 15
// edits each followed at once by a SIGHUP to the supervisor (so each
// worker gets two triggers for one edit, its watcher's and the signal),
// each edit changing upstream timeouts and limits, the algorithm and
// the backends. No request written may go unanswered or get a non-200.
// (passes: no request lost)
func TestWorkersReloadStormStrictLoad(t *testing.T) {
	ups := []*elasticBackend{startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0")}
	listen := freePort(t)
	adminPort := twoFreePorts(t)
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	render := func(i int) string {
		s := r18ReloadRender(listen, admin, ups, i)
		return strings.Replace(strings.Replace(s, "watch_config: false", "watch_config: true", 1), "log: {level: error}", "log: {level: warn, format: json}", 1)
	}
	path := writeConfig(t, render(0))
	sup := exec.Command(binary, "-config", path, "-workers", "2")
	stderr := &syncBuffer{}
	sup.Stderr = stderr
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sup.Process.Signal(syscall.SIGTERM)
		waitExit(t, sup, stderr, 15*time.Second, "supervisor")
	})
	admins := []string{admin, fmt.Sprintf("127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, "http://"+a+"/readyz")
	}
	clients := &busyClients{}
	clients.addr.Store(&listen)
	ctx, stop := context.WithCancel(context.Background())
	wait := clients.run(ctx, 8)
	defer func() { stop(); wait() }()
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 200 })
	for i := 1; i <= 15; i++ {
		replaceFile(t, path, render(i))
		_ = sup.Process.Signal(syscall.SIGHUP)
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(800 * time.Millisecond)
	stop()
	wait()
	t.Logf("%d requests answered", clients.answered.Load())
	if n := clients.lost.Load(); n > 0 {
		t.Errorf("reloads of -workers 2 under load: %d requests failed, e.g.\n%s", n, strings.Join(clients.losses, "\n"))
	}
	for _, a := range admins {
		if cfg := getBody(t, "http://"+a+"/admin/config"); strings.Contains(cfg, "last_reload_error") {
			t.Errorf("worker %s: a reload failed:\n%s", a, grepLines(cfg, "error"))
		}
	}
	if s := stderr.String(); strings.Contains(s, `"level":"error"`) {
		t.Errorf("errors logged:\n%s", grepLines(s, `"level":"error"`))
	}
}
