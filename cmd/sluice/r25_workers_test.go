package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

// r25WorkersProc is a `sluice -workers N` supervisor under test.
type r25WorkersProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan error // gets cmd.Wait's result once, put back by readers
}

// r25WorkersStart runs the test binary as a supervisor of n workers.
// Cleanup kills the supervisor, every worker it logged and any child of it
// still found in /proc.
func r25WorkersStart(t *testing.T, path string, n int) *r25WorkersProc {
	t.Helper()
	cmd := exec.Command(binary, "-config", path, "-workers", strconv.Itoa(n))
	p := &r25WorkersProc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		kids := r25WorkersChildren(pid)
		_ = cmd.Process.Kill()
		select {
		case err := <-p.exited:
			p.exited <- err
		case <-time.After(5 * time.Second):
		}
		for _, k := range append(kids, workerPIDs(p.stderr.String())...) {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		noRaceReport(t, "supervisor and workers", p.stderr.String())
	})
	return p
}

// wait waits up to within for the supervisor's exit and returns its exit
// code (-1 for a signal); it fails t on a timeout.
func (p *r25WorkersProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		t.Fatalf("supervisor wait: %v", err)
	case <-time.After(within):
		t.Fatalf("supervisor still running after %v\n%s", within, p.stderr)
	}
	return 0
}

// r25WorkersChildren lists the children of pid from /proc.
func r25WorkersChildren(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(s); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// r25WorkersState is pid's state letter from /proc (R, S, Z…), "" once
// it is gone.
func r25WorkersState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ...; comm may hold spaces or parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// r25WorkersConfig is a small config for n workers: the proxy on
// listen, the admin API on 127.0.0.1:adminPort (+i), extra lines inserted.
func r25WorkersConfig(listen string, adminPort int, extra string, backends ...string) string {
	s := fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {level: info, format: json}\n%sroutes: [{pool: p}]\npools:\n  p:\n    backends:\n", listen, adminPort, extra)
	for _, b := range backends {
		s += fmt.Sprintf("      - {address: %s}\n", b)
	}
	return s
}

// r25WorkersGet sends GET url on a connection of its own (so the
// kernel spreads the requests over the workers' SO_REUSEPORT sockets).
func r25WorkersGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// r25WorkersRequests is the sum of sluice_requests_total on one
// worker's admin API, -1 when it does not answer.
func r25WorkersRequests(admin string) int {
	code, body, err := r25WorkersGet(admin + "/metrics")
	if err != nil || code != 200 {
		return -1
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sluice_requests_total") {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		n += int(v)
	}
	return n
}

// r25WorkersAdminConfig is /admin/config's generation and last
// reload error on one worker.
func r25WorkersAdminConfig(t *testing.T, admin string) (int, string) {
	t.Helper()
	code, body, err := r25WorkersGet(admin + "/admin/config")
	if err != nil || code != 200 {
		t.Fatalf("GET %s/admin/config: %d %v", admin, code, err)
	}
	var v struct {
		Generation int `json:"generation"`
		Last       *struct {
			Error string `json:"error"`
		} `json:"last_reload_error"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/admin/config: %v\n%s", err, body)
	}
	if v.Last == nil {
		return v.Generation, ""
	}
	return v.Generation, v.Last.Error
}

// r25WorkersUp starts a 2-worker supervisor serving one backend and
// waits for both workers; it returns the proxy address, the two admin
// URLs and the config path.
func r25WorkersUp(t *testing.T, extra string) (*r25WorkersProc, string, []string, string, *elasticBackend) {
	t.Helper()
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, r25WorkersConfig(listen, adminPort, extra, up.addr))
	p := r25WorkersStart(t, path, 2)
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, a+"/readyz")
	}
	return p, listen, admins, path, up
}

// TestWorkersKilledWorkerRejoinsPortNoZombie: README, "Workers":
// the supervisor restarts a worker that dies. Worker 1 killed with
// SIGKILL: the port is served meanwhile by worker 0; the new worker 1
// takes its share of new connections again (its socket rejoined the
// SO_REUSEPORT group); the supervisor never has more than 2 children and
// no zombie; SIGTERM then ends it with 0 and leaves no worker behind.
func TestWorkersKilledWorkerRejoinsPortNoZombie(t *testing.T) {
	p, listen, admins, _, _ := r25WorkersUp(t, "")
	sup := p.cmd.Process.Pid
	old := workerPID(t, p.stderr.String(), 1)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Meanwhile worker 0 serves the port.
	for range 5 {
		if code, _, err := r25WorkersGet("http://" + listen + "/"); err == nil && code != 200 {
			t.Errorf("while worker 1 is down: status %d, want 200", code)
		}
	}
	waitUntil(t, "worker 1 restarted", 8*time.Second, func() bool {
		return workerPID(t, p.stderr.String(), 1) != old && answers(admins[1]+"/readyz", 200)
	})
	if s := r25WorkersState(old); s != "" {
		t.Errorf("killed worker %d still in /proc, state %s (a zombie not reaped)", old, s)
	}
	kids := r25WorkersChildren(sup)
	if len(kids) != 2 {
		t.Errorf("supervisor has %d children %v, want 2", len(kids), kids)
	}
	for _, k := range kids {
		if s := r25WorkersState(k); s == "Z" {
			t.Errorf("child %d of the supervisor is a zombie", k)
		}
	}
	before := r25WorkersRequests(admins[1])
	for range 40 {
		code, _, err := r25WorkersGet("http://" + listen + "/")
		if err != nil || code != 200 {
			t.Fatalf("GET after the restart: %d %v", code, err)
		}
	}
	if after := r25WorkersRequests(admins[1]); after <= before {
		t.Errorf("restarted worker 1 served %d of 40 new connections (requests_total %d → %d): not on the port", after-before, before, after)
	}
	pids := workerPIDs(p.stderr.String())
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 8*time.Second); code != 0 {
		t.Errorf("supervisor exit = %d after SIGTERM, want 0\n%s", code, p.stderr)
	}
	for _, pid := range pids {
		if s := r25WorkersState(pid); s != "" {
			t.Errorf("worker %d left after the supervisor exited (state %s)", pid, s)
		}
	}
}

// TestWorkersBadReloadRefusedByAll: README, "Hot reload" and
// "Workers": SIGHUP to the supervisor reaches every worker; an invalid
// file is refused by each (its generation kept, the error in
// /admin/config) while all keep serving; the supervisor keeps running.
func TestWorkersBadReloadRefusedByAll(t *testing.T) {
	p, listen, admins, path, _ := r25WorkersUp(t, "")
	replaceFile(t, path, "listen: [\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, a := range admins {
		waitUntil(t, a+" records the failed reload", 5*time.Second, func() bool {
			_, last := r25WorkersAdminConfig(t, a)
			return last != ""
		})
		if gen, _ := r25WorkersAdminConfig(t, a); gen != 1 {
			t.Errorf("%s generation = %d after a refused reload, want 1", a, gen)
		}
		if !answers(a+"/readyz", 200) {
			t.Errorf("%s not ready after a refused reload", a)
		}
	}
	for range 10 {
		if code, _, err := r25WorkersGet("http://" + listen + "/"); err != nil || code != 200 {
			t.Fatalf("GET after a refused reload: %d %v", code, err)
		}
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("supervisor exited (%v) on a bad reload\n%s", err, p.stderr)
	default:
	}
}

// r25WorkersPortPair returns a free loopback port p whose p-1 is
// free too.
func r25WorkersPortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		_, ps, _ := net.SplitHostPort(freePort(t))
		p, _ := strconv.Atoi(ps)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p-1)); err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}

// TestWorkersReloadRefusedByOneRefusedByAll: a reload whose
// admin.listen is the proxy's port minus one. `sluice -check -workers 2`
// and the supervisor at start refuse such a file (worker 1's admin API
// would take the proxy's port; README, "Workers",
// TestWorkersAdminPortTakesListen), and on SIGHUP worker 1 refuses it.
// Expected: every worker refuses it, so they keep running one config.
// Worker 0 applies it (new backend, admin moved), and the workers run two
// different configs from then on: half the connections go to a pool the
// other half never sees.
func TestWorkersReloadRefusedByOneRefusedByAll(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	lp := r25WorkersPortPair(t)
	listen := fmt.Sprintf("127.0.0.1:%d", lp)
	adminPort := twoFreePorts(t)
	path := writeConfig(t, r25WorkersConfig(listen, adminPort, "", up1.addr))
	p := r25WorkersStart(t, path, 2)
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d", adminPort), fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		waitReady(t, a+"/readyz")
	}

	bad := r25WorkersConfig(listen, lp-1, "", up1.addr, up2.addr)
	check := exec.Command(binary, "-check", "-workers", "2", "-config", writeConfig(t, bad))
	if out, err := check.CombinedOutput(); err == nil {
		t.Fatalf("sluice -check -workers 2 accepts the new file; the test's premise is wrong:\n%s", out)
	}
	replaceFile(t, path, bad)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 1 refuses the reload", 5*time.Second, func() bool {
		_, last := r25WorkersAdminConfig(t, admins[1])
		return last != ""
	})
	// Give worker 0 the same time to act on its SIGHUP.
	time.Sleep(500 * time.Millisecond)
	moved := fmt.Sprintf("http://127.0.0.1:%d", lp-1)
	if answers(moved+"/healthz", 200) {
		gen, _ := r25WorkersAdminConfig(t, moved)
		_, body, _ := r25WorkersGet(moved + "/admin/pools")
		gen1, last1 := r25WorkersAdminConfig(t, admins[1])
		t.Errorf("worker 0 applied a reload that worker 1 refused: worker 0's admin API moved to %s, generation %d, %s in its pool = %v; worker 1 at generation %d (%s)",
			moved, gen, up2.addr, strings.Contains(body, up2.addr), gen1, last1)
	}
}

// TestWorkersFlagValues: -workers N: a value that is no integer
// is a usage error (exit 2) that names the flag; 0 is one process.
func TestWorkersFlagValues(t *testing.T) {
	path := writeConfig(t, "routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: 127.0.0.1:9001}]\n")
	tests := []struct {
		name string
		give string
		want int
	}{
		{"word", "abc", 2},
		{"fraction", "1.5", 2},
		{"empty", "", 2},
		{"huge", "99999999999999999999", 2},
		{"zero", "0", 0},
		{"one", "1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got := run(context.Background(), []string{"-check", "-workers", tt.give, "-config", path}, &out, &out)
			if got != tt.want {
				t.Errorf("run(-workers %q) = %d, want %d\n%s", tt.give, got, tt.want, out.String())
			}
			if tt.want == 2 && !strings.Contains(out.String(), "-workers") {
				t.Errorf("output does not name -workers:\n%s", out.String())
			}
		})
	}
}

// TestWorkersSIGUSR1ReachesEveryWorker: README, "Workers": the
// supervisor forwards SIGUSR1 to every worker, each reopening the access
// log.
func TestWorkersSIGUSR1ReachesEveryWorker(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	p, _, _, _, _ := r25WorkersUp(t, "access_log: {enabled: true, path: "+logPath+"}\n")
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	reopened := func(i int) bool {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			var e struct {
				Message string `json:"message"`
				Worker  *int   `json:"worker"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Message == "access log reopened" && e.Worker != nil && *e.Worker == i {
				return true
			}
		}
		return false
	}
	waitUntil(t, "both workers reopen the access log", 5*time.Second, func() bool { return reopened(0) && reopened(1) })
}

// TestWorkersSIGINTStopsAllExit0: README's signal table: SIGINT
// is a graceful stop like SIGTERM; the supervisor stops every worker and
// exits 0, leaving no child.
func TestWorkersSIGINTStopsAllExit0(t *testing.T) {
	p, listen, _, _, _ := r25WorkersUp(t, "")
	pids := r25WorkersChildren(p.cmd.Process.Pid)
	if len(pids) != 2 {
		t.Errorf("supervisor children = %v, want 2", pids)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 8*time.Second); code != 0 {
		t.Errorf("supervisor exit = %d after SIGINT, want 0\n%s", code, p.stderr)
	}
	for _, pid := range pids {
		if s := r25WorkersState(pid); s != "" {
			t.Errorf("worker %d left after the supervisor exited (state %s)", pid, s)
		}
	}
	if _, _, err := r25WorkersGet("http://" + listen + "/"); err == nil {
		t.Errorf("proxy port still served after the stop")
	}
}

// TestWorkersTerminatedWorkerRestarted: a worker stopped on its
// own with SIGTERM (an operator's kill of one pid) drains and exits 0;
// the supervisor restarts it, as any worker that dies.
func TestWorkersTerminatedWorkerRestarted(t *testing.T) {
	p, _, admins, _, _ := r25WorkersUp(t, "")
	old := workerPID(t, p.stderr.String(), 0)
	if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 0 restarted", 8*time.Second, func() bool {
		return workerPID(t, p.stderr.String(), 0) != old && answers(admins[0]+"/readyz", 200)
	})
}

// TestWorkersCrashedWorkerRestarted: a worker that crashes after
// its first 2 s (SIGABRT: a Go crash dump, exit status 2, as a panic) is
// restarted; the supervisor does not stop.
func TestWorkersCrashedWorkerRestarted(t *testing.T) {
	started := time.Now()
	p, _, admins, _, _ := r25WorkersUp(t, "")
	time.Sleep(time.Until(started.Add(2500 * time.Millisecond)))
	old := workerPID(t, p.stderr.String(), 1)
	if err := syscall.Kill(old, syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 1 restarted", 8*time.Second, func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("supervisor exited (%v) after a worker crash\n%s", err, grepLines(p.stderr.String(), "worker"))
		default:
		}
		return workerPID(t, p.stderr.String(), 1) != old && answers(admins[1]+"/readyz", 200)
	})
}

// TestWorkersSIGQUITLeavesNoWorker: SIGQUIT is not caught (README:
// Go's default, exit status 2). Under -workers the supervisor so dies at
// once; its workers must not be left serving the port on their own.
func TestWorkersSIGQUITLeavesNoWorker(t *testing.T) {
	p, listen, admins, _, _ := r25WorkersUp(t, "")
	pids := r25WorkersChildren(p.cmd.Process.Pid)
	if err := p.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 5*time.Second); code != 2 {
		t.Errorf("supervisor exit = %d after SIGQUIT, want 2", code)
	}
	waitUntil(t, "workers gone after the supervisor's SIGQUIT", 8*time.Second, func() bool {
		for _, pid := range pids {
			if s := r25WorkersState(pid); s != "" && s != "Z" {
				return false
			}
		}
		return true
	})
	for _, a := range admins {
		if answers(a+"/healthz", 200) {
			t.Errorf("%s still answers", a)
		}
	}
	if _, _, err := r25WorkersGet("http://" + listen + "/"); err == nil {
		t.Errorf("proxy port still served")
	}
}

// TestWorkersStopDuringRestartDelay: a SIGTERM that comes while
// a dead worker waits for its restart (1 s) stops the running one, starts
// no new one, and exits 0 (README: "exits 0 when they did").
func TestWorkersStopDuringRestartDelay(t *testing.T) {
	p, _, _, _, _ := r25WorkersUp(t, "")
	old := workerPID(t, p.stderr.String(), 1)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the supervisor sees worker 1's death", 5*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "restarting it in 1s")
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 8*time.Second); code != 0 {
		t.Errorf("supervisor exit = %d, want 0\n%s", code, p.stderr)
	}
	if n := len(workerPIDs(p.stderr.String())); n != 2 {
		t.Errorf("%d workers started, want 2 (none restarted after the stop)", n)
	}
}
