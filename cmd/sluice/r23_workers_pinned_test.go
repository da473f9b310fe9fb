package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Found by review. What was wrong: with more workers than CPUs, pinWorker (workers.go:405-418) pins
// workers 0..CPUs-1 each to one CPU and leaves the others free to run
// on every CPU: `sluice -workers 3` on two CPUs runs worker 0 on CPU 0
// alone, worker 1 on CPU 1 alone and worker 2 on both. That is neither
// what its comment says ("With more workers than CPUs nothing is
// pinned") nor README's "each with GOMAXPROCS=1 and pinned to one of
// the CPUs sluice may use" (nginx's worker_cpu_affinity auto wraps
// around, pinning worker 2 to CPU 0). The pinned workers cannot move
// away from the one that floats. Expected: every worker alike, all
// pinned (wrapping around) or none; the test accepts either.
func TestWorkersPinnedAlike(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("no taskset")
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	var cpus []string
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if allowed.IsSet(c) {
			cpus = append(cpus, fmt.Sprint(c))
		}
	}
	if len(cpus) < 2 {
		t.Skip("fewer than 2 CPUs")
	}
	// Admin off: three workers need no admin ports.
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: \"\"}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\n", freePort(t)))
	// The supervisor may use two CPUs; three workers.
	cmd := exec.Command("taskset", "-c", strings.Join(cpus, ","), binary, "-config", path, "-workers", "3")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		for _, pid := range workerPIDs(stderr.String()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	waitUntil(t, "three workers serving", 10*time.Second, func() bool {
		return strings.Count(stderr.String(), `"message":"sluice started"`) == 3
	})
	pids := workerPIDs(stderr.String())
	if len(pids) != 3 {
		t.Fatalf("%d workers started, want 3\n%s", len(pids), stderr)
	}
	var counts []int
	for _, pid := range pids {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &set); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, set.Count())
	}
	t.Logf("CPUs each worker may run on: %v", counts)
	for _, n := range counts[1:] {
		if n != counts[0] {
			t.Errorf("workers 0-2 may run on %v CPUs of %d: some pinned, some not; want every worker alike", counts, len(cpus))
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("supervisor exit %v, want 0\n%s", err, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("supervisor did not stop")
	}
}
