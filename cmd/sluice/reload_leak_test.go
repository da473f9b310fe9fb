package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// configGeneration is /admin/config's generation, -1 when it cannot be read.
func configGeneration(admin string) int {
	resp, err := http.Get("http://" + admin + "/admin/config")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Generation int `json:"generation"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return -1
	}
	return v.Generation
}

// openFDs counts the open descriptors of process pid.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}

// TestReloadsOfPoolsLeakNothing: 50 SIGHUP reloads of the real
// process that change what the soak test's reloads do not: pools added
// and removed, backends added and removed (drained), active HTTP and TCP
// health checks and outlier detection turned on and off and re-timed, a
// DNS-discovered pool appearing, re-timed and vanishing, upstream timeouts
// changed (a new client per backend each time), with traffic to every
// pool between reloads. Once drains are over, the process's goroutines
// and descriptors are back where they were (passes: no leak found).
func TestReloadsOfPoolsLeakNothing(t *testing.T) {
	ups := []*elasticBackend{startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0"), startElasticBackend(t, "127.0.0.1:0")}
	dnsSrv := startTestDNS(t, "api.test.")
	dnsSrv.set("127.0.0.1")
	listen, admin := freePort(t), freePort(t)
	render := func(i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error, format: json}\ndrain_timeout: 1s\n", listen, admin)
		fmt.Fprintf(&b, "timeouts: {response: %ds, upstream_idle: 1s}\n", 10+i%3)
		b.WriteString("routes:\n  - {pool: web}\n")
		if i%2 == 1 {
			b.WriteString("  - {match: {path_prefix: /api/}, pool: api}\n  - {match: {path_prefix: /x/}, pool: extra}\n")
		}
		b.WriteString("pools:\n  web:\n    backends:\n")
		for j := 0; j <= i%3; j++ {
			fmt.Fprintf(&b, "      - {address: %s}\n", ups[j].addr)
		}
		if i%4 < 2 {
			fmt.Fprintf(&b, "    health_check: {type: http, path: /h, interval: %dms, timeout: 200ms}\n", 100+i%2*50)
			b.WriteString("    outlier_detection: {consecutive_failures: 3}\n")
		}
		if i%2 == 1 {
			fmt.Fprintf(&b, "  api:\n    discovery: {dns: {name: api.test, port: %d, type: A, interval: %dms, resolver: %s}}\n",
				portOf(t, ups[0].addr), 100+i%3*10, dnsSrv.addr)
			fmt.Fprintf(&b, "  extra:\n    algorithm: ewma\n    health_check: {type: tcp, interval: 100ms, timeout: 100ms}\n    backends: [{address: %s}]\n", ups[2].addr)
		}
		return b.String()
	}
	path := writeConfig(t, render(0))
	p := startSluice(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	traffic := func() {
		for _, u := range []string{"/", "/api/", "/x/"} {
			if resp, err := http.Get("http://" + listen + u); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	traffic()
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(time.Second)
	g0, fds0 := p.goroutines(t), openFDs(t, p.cmd.Process.Pid)
	for i := 1; i <= 50; i++ {
		replaceFile(t, path, render(i))
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		waitUntil(t, fmt.Sprintf("reload %d", i), 10*time.Second, func() bool { return configGeneration(admin) >= i+1 })
		traffic()
	}
	replaceFile(t, path, render(0))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the last reload", 10*time.Second, func() bool { return configGeneration(admin) >= 52 })
	traffic()
	http.DefaultClient.CloseIdleConnections()
	var g, fds int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if g, fds = p.goroutines(t), openFDs(t, p.cmd.Process.Pid); g <= g0+2 && fds <= fds0+2 {
			break
		}
	}
	t.Logf("goroutines %d -> %d, descriptors %d -> %d", g0, g, fds0, fds)
	if g > g0+5 || fds > fds0+5 {
		t.Errorf("after 51 reloads: %d goroutines (%d before), %d descriptors (%d before)", g, g0, fds, fds0)
	}
	if s := p.stderr.String(); strings.Contains(s, "rejected") {
		t.Errorf("a reload was rejected:\n%s", grepLines(s, "rejected"))
	}
}
