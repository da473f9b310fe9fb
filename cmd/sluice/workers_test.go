package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoFreePorts returns a loopback port p such that p and p+1 are free.
func twoFreePorts(t *testing.T) int {
	t.Helper()
	for range 50 {
		_, ps, _ := net.SplitHostPort(freePort(t))
		p, _ := strconv.Atoi(ps)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}

// TestWorkers runs `sluice -workers 2`: both workers serve the one port
// and their own admin ports, SIGHUP reaches both, a killed worker is
// restarted, and SIGTERM stops everything with exit 0.
func TestWorkers(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	render := func(backends ...string) string {
		s := fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n", listen, adminPort)
		for _, b := range backends {
			s += fmt.Sprintf("      - {address: %s}\n", b)
		}
		return s
	}
	path := writeConfig(t, render(up1.addr))
	cmd := exec.Command(binary, "-config", path, "-workers", "2")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		noRaceReport(t, "supervisor", stderr.String())
	})
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, a+"/readyz")
	}
	for range 40 {
		resp, err := http.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := up1.hits.Load(); got != 40 {
		t.Errorf("backend hits = %d, want 40", got)
	}

	if err := os.WriteFile(path, []byte(render(up1.addr, up2.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, a := range admins {
		waitUntil(t, "reload reaches "+a, 3*time.Second, func() bool {
			resp, err := http.Get(a + "/admin/pools")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), up2.addr)
		})
	}

	// Kill worker 1 the hard way: the supervisor starts a new one.
	pid := workerPID(t, stderr.String(), 1)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 1 restarted", 5*time.Second, func() bool {
		return workerPID(t, stderr.String(), 1) != pid && answers(admins[1]+"/readyz", 200)
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, stderr, 15*time.Second, "supervisor")
	for _, a := range admins {
		if resp, err := http.Get(a + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after SIGTERM", a)
		}
	}
}

// workerPID finds the last "worker started" pid of worker i in the log.
func workerPID(t *testing.T, log string, i int) int {
	t.Helper()
	pid := 0
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Message string `json:"message"`
			Worker  *int   `json:"worker"`
			PID     int    `json:"pid"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "worker started" && e.Worker != nil && *e.Worker == i {
			pid = e.PID
		}
	}
	if pid == 0 {
		t.Fatalf("no worker %d in the log:\n%s", i, log)
	}
	return pid
}

// TestWorkersDieWithSupervisor: a supervisor killed outright (SIGKILL,
// no chance to stop its workers) still takes them down: each gets SIGTERM
// from the kernel (Pdeathsig) and stops, leaving neither port served.
func TestWorkersDieWithSupervisor(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools:\n  p:\n    backends: [{address: %s}]\n", listen, adminPort, up.addr))
	cmd := exec.Command(binary, "-config", path, "-workers", "2")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, a+"/readyz")
	}
	pids := []int{workerPID(t, stderr.String(), 0), workerPID(t, stderr.String(), 1)}
	t.Cleanup(func() {
		for _, pid := range pids { // in case Pdeathsig did not act
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	for _, a := range admins {
		waitUntil(t, a+" gone after the supervisor was killed", 10*time.Second, func() bool {
			resp, err := http.Get(a + "/healthz")
			if err != nil {
				return true
			}
			resp.Body.Close()
			return false
		})
	}
	noRaceReport(t, "supervisor and workers", stderr.String())
}
