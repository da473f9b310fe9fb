package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startSupervisorWith runs exe -config path -workers n plus args; cleanup
// kills it and every worker it logged.
func startSupervisorWith(t *testing.T, exe, path string, n int, stdout io.Writer, args ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(exe, append([]string{"-config", path, "-workers", fmt.Sprint(n)}, args...)...)
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-exited
		exited <- err
		for _, pid := range workerPIDs(stderr.String()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		noRaceReport(t, "supervisor and workers", stderr.String())
	})
	return cmd, stderr, exited
}

func workersConfig(listen string, adminPort int, backend, extra string) string {
	return fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {level: info, format: json}\n%sroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		listen, adminPort, extra, backend)
}

// TestWorkerRestartAfterBinaryRemoved: the sluice binary that
// runs `-workers 2` is removed from its path (a package upgrade that
// installs a new version elsewhere, or removes the old one; `install`
// unlinking it), then a worker dies.
//
// Before the fix (found by review): the supervisor restarts workers by exec'ing the path os.Executable
// returned at its start, not the binary it is running, so the worker is
// never restarted: "fork/exec …/sluice: no such file or directory" every
// second, one worker short for good. Had a new version been put at that
// path, the restarted worker would be that new version under the old
// supervisor (flags and the ready pipe are a private protocol between the
// two). nginx's master forks its workers from its own image. Expected:
// the worker is restarted from the running binary (exec /proc/self/exe)
// and serves again.
func TestWorkerRestartAfterBinaryRemoved(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, workersConfig(listen, adminPort, up.addr, ""))
	exe := filepath.Join(t.TempDir(), "sluice")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ := startSupervisorWith(t, exe, path, 2, nil)
	admin1 := fmt.Sprintf("http://127.0.0.1:%d", adminPort+1)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	waitReady(t, admin1+"/readyz")
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	pid := workerPID(t, stderr.String(), 1)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if workerPID(t, stderr.String(), 1) != pid && answers(admin1+"/readyz", 200) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("worker 1 not restarted 15s after it died (its binary's path removed)\n%s", grepLines(stderr.String(), "restart"))
}

// TestWorkersPprofRefused: `sluice -workers 2 -pprof ADDR`.
//
// Before the fix (found by review): -pprof is silently dropped under -workers: run hands supervise
// only the config path and the count, and the workers are started without
// it, so nothing serves ADDR and nothing says so (README's flag table
// promises pprof on ADDR and a "pprof listening" log line). Expected:
// either the flag is refused at start (a usage error, exit 2), or pprof
// is served (by the supervisor, or by worker i on ADDR's port + i as the
// admin API is); actual: the workers serve, ADDR refuses connections.
func TestWorkersPprofRefused(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort, pprofAddr := freePort(t), twoFreePorts(t), freePort(t)
	path := writeConfig(t, workersConfig(listen, adminPort, up.addr, ""))
	_, stderr, exited := startSupervisorWith(t, binary, path, 2, nil, "-pprof", pprofAddr)
	admins := []string{fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort), fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort+1)}
	deadline := time.Now().Add(15 * time.Second)
	for !answers(admins[0], 200) || !answers(admins[1], 200) {
		select {
		case err := <-exited:
			exited <- err
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(stderr.String(), "pprof") {
				t.Errorf("supervisor exited %v without saying why about -pprof\n%s", err, stderr)
			}
			return // refused: fine
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers not ready\n%s", stderr)
		}
	}
	c := &http.Client{Timeout: 2 * time.Second}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if resp, err := c.Get("http://" + pprofAddr + "/debug/pprof/"); err == nil {
			resp.Body.Close()
			return
		}
	}
	t.Errorf("-workers 2 -pprof %s: workers serve, but nothing serves pprof and nothing says so\n%s", pprofAddr, stderr)
}

// TestSupervisorKeepsSIGUSR1: logrotate renames the access log
// and sends SIGUSR1 to the supervisor just after two SIGHUPs (a deploy
// reloading, twice), while the supervisor is still re-reading a large
// config file for the first one.
//
// Before the fix (found by review): supervise catches SIGHUP and SIGUSR1 on one channel with room for
// one signal. While its loop is busy (reread parses the file before it
// forwards a SIGHUP), the second SIGHUP fills the slot and the SIGUSR1 is
// dropped by package signal (it never blocks a send). The workers are not
// told to reopen the log: they go on writing to the rotated file (which
// logrotate then compresses or deletes). serve itself uses one channel
// per signal, which only merges repeats of the same signal. Expected: a
// new access.log is created; actual: none, ever.
func TestSupervisorKeepsSIGUSR1(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	logPath := filepath.Join(t.TempDir(), "access.log")
	listen, adminPort := freePort(t), twoFreePorts(t)
	base := workersConfig(listen, adminPort, up.addr, "access_log: {enabled: true, path: "+logPath+"}\n")
	path := writeConfig(t, base)
	cmd, stderr, _ := startSupervisorWith(t, binary, path, 1, nil)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	// The same config, padded with comments to 3.5 MiB: a re-read takes the
	// supervisor tens of milliseconds (a second or more under -race).
	var pad strings.Builder
	pad.WriteString(base)
	for i := 0; pad.Len() < 7<<19; i++ {
		fmt.Fprintf(&pad, "# padding %07d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", i)
	}
	replaceFile(t, path, pad.String())
	resp, err := http.Get("http://" + listen + "/before")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitUntil(t, "first access log line", 5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "/before")
	})
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGHUP, syscall.SIGUSR1} {
		_ = cmd.Process.Signal(sig)
		time.Sleep(10 * time.Millisecond)
	}
	for deadline := time.Now().Add(25 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(logPath); err == nil {
			return
		}
	}
	t.Errorf("no new %s 25s after SIGHUP, SIGHUP, SIGUSR1 to the supervisor: the SIGUSR1 was lost\n%s",
		filepath.Base(logPath), grepLines(stderr.String(), "reload"))
}

// TestWorkersAccessLogStdoutWholeLines: `-workers 2` with
// access_log path stdout, stdout a pipe (docker, a log shipper) whose
// reader is, for a while, slower than the traffic.
//
// Before the fix (found by review): each worker writes its access log in 64 KiB batches (one write per
// flush), and a write to a pipe is atomic only up to PIPE_BUF (4 KiB):
// once the pipe is full, the two workers' batches are interleaved by the
// kernel page by page, splicing one worker's line into the middle of
// another's. The reader gets lines that are not JSON. A single process
// has one writer (but during a reload that replaces the access log, the
// old logger's last flush and the new logger's writes can splice the same
// way). Expected: every line intact (nginx writes each line with its own
// write, atomic on a pipe); actual: broken lines like
// `{"time":…,"hos{"time":…}`.
func TestWorkersAccessLogStdoutWholeLines(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, workersConfig(listen, adminPort, up.addr, "access_log: {enabled: true, path: stdout}\n"))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	startSupervisorWith(t, binary, path, 2, w)
	w.Close()
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort+1))

	var (
		mu      sync.Mutex
		lines   int
		bad     []string
		fast    atomic.Bool // the load is over: read at full speed
		started = time.Now()
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		br := bufio.NewReaderSize(slowReader{r: r, started: started, fast: &fast}, 1<<20)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 && err == nil {
				var v map[string]any
				mu.Lock()
				lines++
				if json.Unmarshal(line, &v) != nil && len(bad) < 2 {
					bad = append(bad, string(line[:min(len(line), 400)]))
				}
				mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for ctx.Err() == nil {
				if resp, err := c.Get("http://" + listen + "/a/path/long/enough/to/make/lines/of/a/realistic/length"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	fast.Store(true)
	select {
	case <-readDone: // the reader saw 1s of quiet
	case <-time.After(30 * time.Second):
		t.Fatal("access log reader did not finish")
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d access log lines read", lines)
	if lines < 200 {
		t.Fatalf("only %d lines: too little traffic to tell", lines)
	}
	if len(bad) > 0 {
		t.Errorf("access log lines of two workers spliced on a shared stdout pipe (not JSON):\n%s", strings.Join(bad, "\n"))
	}
}

// slowReader reads nothing for the first 2 s (the pipe fills), then
// 512 bytes every 10 ms until fast is set, then at full speed until 1 s
// passes without data.
type slowReader struct {
	r       *os.File
	started time.Time
	fast    *atomic.Bool
}

func (s slowReader) Read(p []byte) (int, error) {
	if s.fast.Load() {
		_ = s.r.SetReadDeadline(time.Now().Add(time.Second))
		return s.r.Read(p)
	}
	if wait := 2*time.Second - time.Since(s.started); wait > 0 {
		time.Sleep(wait)
	}
	time.Sleep(10 * time.Millisecond)
	_ = s.r.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.r.Read(p[:min(len(p), 512)])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, err
}
