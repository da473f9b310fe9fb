package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestSupervisorRestartsLeakNoFD: each worker restart opens a
// ready pipe and a pidfd in the supervisor; after 4 restarts the
// supervisor holds as many descriptors as before. (regression test from review)
func TestSupervisorRestartsLeakNoFD(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, adminPort := freePort(t), twoFreePorts(t)
	path := writeConfig(t, workersConfig(listen, adminPort, up.addr, ""))
	cmd, stderr := startSupervisor(t, path, 1)
	admin := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)
	waitReady(t, admin)
	time.Sleep(200 * time.Millisecond)
	before := wkFDs(t, cmd.Process.Pid)
	for range 4 {
		pid := workerPID(t, stderr.String(), 0)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "worker restarted", 5*time.Second, func() bool {
			return workerPID(t, stderr.String(), 0) != pid && answers(admin, 200)
		})
	}
	// A restart's descriptors close as its worker settles: wait for it
	// (bounded).
	after := wkFDs(t, cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		after = wkFDs(t, cmd.Process.Pid)
	}
	if after > before {
		t.Errorf("supervisor fds: %d before 4 worker restarts, %d after", before, after)
	}
}

// wkFDs counts the open descriptors of process pid.
func wkFDs(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
