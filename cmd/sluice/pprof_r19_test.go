package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: with `-pprof 127.0.0.1:0` (let the kernel pick the port, as for
// any Go listener) the log line `pprof listening` names "127.0.0.1:0", the
// flag's text, not the port pprof got, so the profiler cannot be found.
// README.md line 143: "-pprof ADDR ... logs `pprof listening` with the
// address". serve (cmd/sluice/serve.go, after startPprof) logs
// opts.pprofAddr; startPprof has the listener and could return
// ln.Addr().String().
func TestPprofLogsBoundAddress(t *testing.T) {
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, "listen: "+listen+"\nadmin: {listen: "+admin+"}\nwatch_config: false\n"+
		"routes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9}]}}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-config", path, "-pprof", "127.0.0.1:0"}, out, out) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "sluice started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var logged string
	for _, line := range strings.Split(out.String(), "\n") {
		var e struct{ Message, Listen string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "pprof listening" {
			logged = e.Listen
		}
	}
	var dialErr error
	if logged != "" {
		var c net.Conn
		if c, dialErr = net.DialTimeout("tcp", logged, time.Second); dialErr == nil {
			c.Close()
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if logged == "" {
		t.Fatalf("no `pprof listening` line:\n%s", out.String())
	}
	if strings.HasSuffix(logged, ":0") || dialErr != nil {
		t.Errorf("`pprof listening` names %q (dial: %v), want the address pprof serves on", logged, dialErr)
	}
}
