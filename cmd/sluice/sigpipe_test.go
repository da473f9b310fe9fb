package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestBrokenLogPipeDoesNotKill: sluice's standard output (the access log
// with path: stdout) or standard error (the process log) is a pipe to a
// log shipper, and the shipper goes away (restarts, crashes).
//
// Before the fix (found by review): sluice is killed by SIGPIPE on its next write to that descriptor:
// Go's runtime raises SIGPIPE for a write to a broken pipe on fd 1 or 2
// unless the program ignores or catches it, and sluice does neither. A
// request (access log line) or a SIGHUP (its "config reloaded" line) ends
// the process, in-flight requests and all, instead of the line being
// dropped (README: the access log drops and counts lines it cannot write;
// "a log output that stops taking bytes" must not hold sluice, let alone
// kill it). Expected: sluice keeps serving; actual: "signal: broken pipe".
// Under -workers the supervisor's own log lines kill it the same way, and
// its workers then get SIGTERM (PR_SET_PDEATHSIG).
func TestBrokenLogPipeDoesNotKill(t *testing.T) {
	tests := []struct {
		name   string
		stdout bool // the broken pipe is stdout (access log); else stderr (process log)
	}{
		{name: "access_log_on_stdout", stdout: true},
		{name: "process_log_on_stderr", stdout: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startElasticBackend(t, "127.0.0.1:0")
			listen, admin := freePort(t), freePort(t)
			path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: info, format: json}\n"+
				"access_log: {enabled: true, path: stdout}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
				listen, admin, up.addr))
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "-config", path)
			other := &syncBuffer{}
			if tt.stdout {
				cmd.Stdout, cmd.Stderr = w, other
			} else {
				cmd.Stdout, cmd.Stderr = io.Discard, w
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			// Drain the pipe until sluice is up, then go away.
			go io.Copy(io.Discard, r)
			waitReady(t, "http://"+admin+"/readyz")
			r.Close()

			c := &http.Client{Timeout: 5 * time.Second}
			for i := range 10 {
				if !tt.stdout && i == 0 {
					_ = cmd.Process.Signal(syscall.SIGHUP) // logs "config reloaded"
				}
				if resp, err := c.Get("http://" + listen + "/"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("sluice exited (%v) once the reader of its %s went away; want it to keep serving\n%s",
						err, map[bool]string{true: "stdout", false: "stderr"}[tt.stdout], other)
				case <-time.After(200 * time.Millisecond):
				}
			}
			if !answers("http://"+admin+"/readyz", 200) {
				t.Error("sluice not ready after its log reader went away")
			}
		})
	}
}
