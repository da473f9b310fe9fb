package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binary is sluice built once for the tests that run it as a process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sluice")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		// Then the process tests (workers, signals, reloads under load)
		// are race-checked too: a race makes the child print a report and
		// exit 66, which waitExit reports.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// The in-process tests (demo, reload) must leave nothing running once
	// run() returns; fasthttp's self-ending sweeps and Date clock aside.
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// freePort returns a loopback address no one listens on, for a process
// under test to bind later. The port is drawn from below the kernel's
// ephemeral range: a port the kernel handed out for port 0 would be free
// again once checked here, and the next socket bound to port 0 or
// connecting out (a demo upstream, the test's own client) could take it
// before the process binds it (TestDemo once met "connection refused"
// that way).
func freePort(t *testing.T) string {
	t.Helper()
	low := ephemeralLow()
	for range 100 {
		port := 0
		if low > minTestPort+1000 {
			// Short of the range's start by a few, for tests that take
			// the ports after this one too (twoFreePorts).
			port = minTestPort + rand.IntN(low-minTestPort-16)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				t.Fatal(err)
			}
			continue // taken: draw again
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range in 100 draws")
	return ""
}

// minTestPort is the lowest port freePort draws: above the well-known and
// the commonly configured service ports.
const minTestPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range, or 0
// where the kernel does not say.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckAndVersion(t *testing.T) {
	valid := writeConfig(t, "routes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9001}]}}\n")
	invalid := writeConfig(t, "routes: [{pool: q}]\npools:\n  p:\n    backends:\n      - {address: 127.0.0.1:9001, weight: -2}\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"valid", []string{"-check", "-config", valid}, 0, []string{"configuration is valid"}},
		{"invalid lists every error", []string{"-check", "-config", invalid}, 1,
			[]string{invalid + ":1: routes[0].pool: unknown pool \"q\"", invalid + ":5: pools.p.backends[0].weight: must be >= 0", "configuration is invalid"}},
		{"missing file", []string{"-check", "-config", "/nonexistent/sluice.yaml"}, 1, []string{"no such file"}},
		{"version", []string{"-version"}, 0, []string{"sluice dev go1."}},
		{"bad flag", []string{"-nope"}, 2, []string{"flag provided but not defined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(context.Background(), tt.args, &out, &out)
			if code != tt.wantCode {
				t.Errorf("run(%v) = %d, want %d\n%s", tt.args, code, tt.wantCode, out.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q does not contain %q", out.String(), w)
				}
			}
		})
	}
}

// TestSIGTERMFinishesInFlight runs sluice as a process, starts a slow
// request, sends SIGTERM, and expects the request to finish with 200 and
// the process to exit 0.
func TestSIGTERMFinishesInFlight(t *testing.T) {
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		io.WriteString(w, "slow done")
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(ln)
	defer slow.Close()

	listen, admin := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\nshutdown_timeout: 10s\nlog: {level: warn}\n",
		listen, admin, ln.Addr()))
	cmd := exec.Command(binary, "-config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitReady(t, "http://"+admin+"/readyz")

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(300 * time.Millisecond) // the request is now at the backend
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "slow done" {
		t.Errorf("in-flight request = %d %q %v, want 200 \"slow done\"", r.code, r.body, r.err)
	}
	waitExit(t, cmd, &stderr, 10*time.Second, "sluice")
}

// TestSecondSIGTERMExitsAtOnce: the first SIGTERM starts the graceful
// shutdown (here a long shutdown_delay), during which the admin API
// refuses runtime changes; a second one ends the process at once, killed
// by the signal, as a second Ctrl-C does.
func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	listen, admin := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\nshutdown_delay: 20s\nlog: {level: warn}\n",
		listen, admin))
	cmd := exec.Command(binary, "-config", cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitReady(t, "http://"+admin+"/readyz")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The first signal is taken: readiness goes off, the process stays.
	waitUntil(t, "readiness off after SIGTERM", 5*time.Second, func() bool { return answers("http://"+admin+"/readyz", 503) })
	// Runtime changes are refused while shutting down, as reloads are.
	resp, err := http.Post("http://"+admin+"/admin/pools/p/backends/127.0.0.1:9/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("drain during shutdown = %d, want 503", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("exit after the second SIGTERM = %v, want killed by SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sluice still running 5s after a second SIGTERM (shutdown_delay 20s)\n%s", stderr.String())
	}
}

// waitExit waits up to within for cmd, already signalled, to exit with
// status 0; the process's stderr goes into the failure message.
func waitExit(t *testing.T, cmd *exec.Cmd, stderr fmt.Stringer, within time.Duration, name string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("%s exit: %v, want status 0\n%s", name, err, stderr.String())
		} else {
			noRaceReport(t, name, stderr.String())
		}
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v", name, within)
	}
}

// noRaceReport fails t if a process's stderr holds a race detector report
// (the binary is built with -race when the tests are).
func noRaceReport(t *testing.T, name, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race:\n%s", name, stderr)
	}
}

// answers reports whether a GET of url gets status code.
func answers(url string, code int) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == code
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// TestDemo runs `sluice demo` in-process: three upstreams behind the
// proxy, all reached, and a clean stop when the context ends.
func TestDemo(t *testing.T) {
	listen, admin := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"demo", "-listen", listen, "-admin", admin}, &out, io.Discard) }()
	waitReady(t, "http://"+admin+"/readyz")
	seen := map[string]int{}
	for range 30 {
		resp, err := http.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.Header.Get("X-Backend")]++
	}
	if len(seen) != 3 || seen["demo-1"] != 10 {
		t.Errorf("demo spread = %v, want 10 each over demo-1..3", seen)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("demo exit = %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
	if !strings.Contains(out.String(), "curl -s http://"+listen) {
		t.Errorf("demo banner %q does not say what to curl", out.String())
	}
}
