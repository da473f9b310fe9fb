package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// gaugeValue reads one unlabelled series of /metrics (parsed as
// Prometheus would).
func gaugeValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	v, ok := reviewValue(reviewScrape(t, admin), name, nil)
	if !ok {
		t.Fatalf("no %s", name)
	}
	return v
}

// TestMetricsDownstreamConnsFlows: sluice_downstream_connections
// returns to the number of connections really open after each way a
// client connection ends: refusals fasthttp makes (bare LF, 431, 413,
// 408), a refusal sluice makes (400 with a lingering close), a keep-alive
// idle timeout, a Connection: close answer, and a moved listener.
func TestMetricsDownstreamConnsFlows(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	cfg := func(listen string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\n"+
			"timeouts: {client_read: 300ms, idle: 300ms}\nlimits: {max_header_bytes: 4096, max_body_bytes: 100}\n"+
			"routes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen, admin, up.addr)
	}
	path := writeConfig(t, cfg(listen))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	settle := func(step string, want float64) {
		t.Helper()
		var v float64
		for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
			if v = gaugeValue(t, admin, "sluice_downstream_connections"); v == want {
				return
			}
		}
		t.Errorf("%s: sluice_downstream_connections = %v, want %v", step, v, want)
	}
	exchange := func(raw string) int {
		t.Helper()
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct{ name, raw string }{
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n"},
		{"431", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n"},
		{"413", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("b", 1000)},
		{"408", "GET / HTTP/1.1\r\nHost: x\r\n"},
		{"400 by sluice", "GET /a/%2e%2e/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"kept alive, then idle", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		code := exchange(tc.raw)
		t.Logf("%s: %d", tc.name, code)
		settle(tc.name, 0)
	}
	// A kept-alive connection open across a reload that moves the listener.
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	settle("one kept alive", 1)
	listen2 := freePort(t)
	if err := os.WriteFile(path, []byte(cfg(listen2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	settle("after the listener moved and the old connection idled out", 0)
}
