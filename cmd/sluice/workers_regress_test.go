package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestWorkersStartupFailureAfterDNSWait: the worker's port is taken, as
// in TestWorkersStartupFailure, and the config has a DNS pool whose first
// lookup takes 3 s. The worker waits for that lookup before it listens,
// so it fails after startGrace; its exit status (exitNotStarted) still
// makes the supervisor exit 1 rather than restart it forever.
func TestWorkersStartupFailureAfterDNSWait(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	d := startSlowDNS(t, 3*time.Second)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: info, format: json}\nroutes: [{pool: api}]\npools:\n  api:\n    discovery: {dns: {name: api.test, port: 80, type: A, interval: 5s, resolver: %s}}\n",
		held.Addr(), freePort(t), d.addr))
	cmd, stderr := startSupervisor(t, path, 1)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		log := stderr.String()
		t.Errorf("supervisor still running 15 s after its only worker failed to listen; %d worker starts, %d \"restarting\" lines",
			len(workerPIDs(log)), strings.Count(log, "restarting it in 1s"))
	}
}
