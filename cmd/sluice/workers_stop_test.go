package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startSupervisor runs `sluice -config path -workers n`. Cleanup kills it
// and every worker it logged, in case a test failed before they stopped.
func startSupervisor(t *testing.T, path string, n int) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(binary, "-config", path, "-workers", fmt.Sprint(n))
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		for _, pid := range workerPIDs(stderr.String()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		noRaceReport(t, "supervisor and workers", stderr.String())
	})
	return cmd, stderr
}

// workerPIDs lists the pid of every "worker started" line in the log.
func workerPIDs(log string) []int {
	var pids []int
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Message string `json:"message"`
			PID     int    `json:"pid"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "worker started" {
			pids = append(pids, e.PID)
		}
	}
	return pids
}

// waitFailure waits up to within for cmd to exit with a non-zero status.
func waitFailure(t *testing.T, cmd *exec.Cmd, stderr fmt.Stringer, within time.Duration) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
			t.Errorf("supervisor exit: %v, want a non-zero status\n%s", err, stderr)
		}
	case <-time.After(within):
		t.Fatalf("supervisor still running after %v\n%s", within, stderr)
	}
}

// TestWorkersStopBoundFollowsReload: the supervisor gives its workers
// shutdown_delay + shutdown_timeout (+10s) to stop, from the config in
// force at SIGTERM, not the one it started with. Raised from 1s to 30s by
// a SIGHUP (the file then broken: the bound stays) or by a file change the
// workers pick up themselves, a 13 s request in flight at SIGTERM
// completes; with the start's bound (11 s) its worker was killed.
func TestWorkersStopBoundFollowsReload(t *testing.T) {
	tests := []struct {
		name  string
		watch bool // the workers reload on the file change; no SIGHUP
	}{
		{name: "sighup", watch: false},
		{name: "file_change", watch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var atBackend atomic.Bool
			slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				atBackend.Store(true)
				select {
				case <-time.After(13 * time.Second):
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "slow done")
			}), ReadHeaderTimeout: 5 * time.Second}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go slow.Serve(ln)
			t.Cleanup(func() { slow.Close() })

			listen, admin := freePort(t), freePort(t)
			render := func(timeout string) string {
				return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: %t\nshutdown_timeout: %s\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
					listen, admin, tt.watch, timeout, ln.Addr())
			}
			path := writeConfig(t, render("1s"))
			cmd, stderr := startSupervisor(t, path, 1)
			waitReady(t, "http://"+admin+"/readyz")

			replaceFile(t, path, render("30s"))
			if !tt.watch {
				if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "the worker reloads", 5*time.Second, func() bool {
				return strings.Contains(stderr.String(), `"config reloaded"`)
			})
			if !tt.watch {
				// The supervisor must keep the bound it read on SIGHUP.
				replaceFile(t, path, "listen: [\n")
			}

			done := make(chan error, 1)
			go func() {
				c := &http.Client{Timeout: 30 * time.Second}
				resp, err := c.Get("http://" + listen + "/")
				if err != nil {
					done <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "slow done" {
					err = fmt.Errorf("got %d %q", resp.StatusCode, b)
				}
				done <- err
			}()
			waitUntil(t, "the request at the backend", 5*time.Second, atBackend.Load)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("in-flight request: %v, want 200 \"slow done\"\n%s", err, stderr)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("in-flight request not done 20s after SIGTERM\n%s", stderr)
			}
			waitExit(t, cmd, stderr, 10*time.Second, "supervisor")
		})
	}
}

// TestWorkersStartupFailure: with the proxy port held by another process
// (no SO_REUSEPORT), every worker fails at its start. The supervisor
// exits 1 with the worker's error in its log, as a single sluice process
// does, instead of restarting workers forever.
func TestWorkersStartupFailure(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\n",
		held.Addr(), freePort(t)))
	cmd, stderr := startSupervisor(t, path, 2)
	waitFailure(t, cmd, stderr, 10*time.Second)
	log := stderr.String()
	if !strings.Contains(log, "address already in use") {
		t.Errorf("the worker's error is not in the log:\n%s", log)
	}
	if got := len(workerPIDs(log)); got != 2 {
		t.Errorf("%d workers started, want 2 (no restarts)\n%s", got, log)
	}
}

// TestWorkersRestartFailing: a worker killed after it started is restarted
// even while its restarts fail (the config file broken meanwhile): the
// other one serves. Once no worker runs and each one's restart failed,
// the supervisor exits 1.
func TestWorkersRestartFailing(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	good := fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, adminPort, up.addr)
	path := writeConfig(t, good)
	cmd, stderr := startSupervisor(t, path, 2)
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, a+"/readyz")
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	replaceFile(t, path, "listen: [\n")
	if err := syscall.Kill(workerPID(t, stderr.String(), 1), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 1 restarted twice", 10*time.Second, func() bool {
		return len(workerPIDs(stderr.String())) >= 4
	})
	select {
	case err := <-exited:
		t.Fatalf("supervisor exited (%v) with worker 0 serving\n%s", err, stderr)
	default:
	}
	if !answers(admins[0]+"/readyz", 200) {
		t.Errorf("worker 0 not ready while worker 1 restarts")
	}

	replaceFile(t, path, good)
	waitUntil(t, "worker 1 back", 10*time.Second, func() bool { return answers(admins[1]+"/readyz", 200) })

	replaceFile(t, path, "listen: [\n")
	log := stderr.String()
	for _, i := range []int{0, 1} {
		if err := syscall.Kill(workerPID(t, log, i), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
			t.Errorf("supervisor exit: %v, want a non-zero status\n%s", err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("supervisor still running 10s after no worker could restart\n%s", stderr)
	}
}

// TestWorkersSecondSignal: a second SIGTERM or SIGINT during the graceful
// stop (a 20 s shutdown_delay here) kills the workers and ends the
// supervisor at once, as it ends a single sluice process.
func TestWorkersSecondSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			listen, adminPort := freePort(t), twoFreePorts(t)
			path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nshutdown_delay: 20s\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\n",
				listen, adminPort))
			cmd, stderr := startSupervisor(t, path, 2)
			admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
			for _, a := range admins {
				waitReady(t, a+"/readyz")
			}
			pids := workerPIDs(stderr.String())
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			for _, a := range admins {
				waitUntil(t, a+" readiness off", 5*time.Second, func() bool { return answers(a+"/readyz", 503) })
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitFailure(t, cmd, stderr, 5*time.Second)
			for _, pid := range pids {
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("worker %d still there after the supervisor exited: %v", pid, err)
				}
			}
		})
	}
}
