package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWorkerLogLinesNameWorker: under -workers each worker's log lines
// carry its index, so that lines on the shared stderr can be told apart
// (found by a walkthrough: two identical "sluice started" lines).
func TestWorkerLogLinesNameWorker(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	adminPort := twoFreePorts(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nlog: {format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
		freePort(t), adminPort, up.addr))
	_, stderr := startSupervisor(t, path, 2)
	started := func() []string {
		var out []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, `"message":"sluice started"`) {
				out = append(out, l)
			}
		}
		return out
	}
	waitUntil(t, "both workers started", 20*time.Second, func() bool { return len(started()) == 2 })
	seen := map[string]bool{}
	for _, l := range started() {
		for _, w := range []string{`"worker":0`, `"worker":1`} {
			if strings.Contains(l, w) {
				seen[w] = true
			}
		}
	}
	if !seen[`"worker":0`] || !seen[`"worker":1`] {
		t.Errorf("the workers' start lines do not name workers 0 and 1:\n%s", strings.Join(started(), "\n"))
	}
}
