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

// TestRefusedConnsMetric: a client connection over limits.max_client_conns
// is answered 503 and counted in sluice_downstream_connections_refused_total,
// and the count carries over when the listener moves to a new server.
func TestRefusedConnsMetric(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen1, listen2, admin := freePort(t), freePort(t), freePort(t)
	render := func(listen string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nlimits: {max_client_conns: 1}\n"+
			"routes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen, admin, up.addr)
	}
	path := writeConfig(t, render(listen1))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	refused := func() string {
		for _, line := range strings.Split(getBody(t, "http://"+admin+"/metrics"), "\n") {
			if strings.HasPrefix(line, "sluice_downstream_connections_refused_total ") {
				return line
			}
		}
		return "no sluice_downstream_connections_refused_total"
	}
	// refuseOne holds the one connection allowed on listen and checks
	// that the next is answered 503.
	refuseOne := func(listen string) {
		t.Helper()
		held := dialServed(t, listen)
		defer held.Close()
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection over the limit: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("connection over the limit got %d, want 503", resp.StatusCode)
		}
	}

	if got := refused(); got != "sluice_downstream_connections_refused_total 0" {
		t.Fatalf("before any refusal: %q", got)
	}
	refuseOne(listen1)
	if got := refused(); got != "sluice_downstream_connections_refused_total 1" {
		t.Fatalf("after one refusal: %q", got)
	}

	// A moved listener is a new server; the old one's count stays.
	if err := os.WriteFile(path, []byte(render(listen2)), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitUntil(t, "listener moved", reloadWait, func() bool { return answers("http://"+listen2+"/", 200) })
	if got := refused(); got != "sluice_downstream_connections_refused_total 1" {
		t.Fatalf("after the move: %q", got)
	}
	refuseOne(listen2)
	waitUntil(t, "two refusals counted", reloadWait, func() bool {
		return refused() == "sluice_downstream_connections_refused_total 2"
	})
}

// dialServed opens a connection to listen and has one request served on
// it, so that the server counts it before the test goes on.
func dialServed(t *testing.T, listen string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Proto, "1.1") {
		t.Fatalf("held connection got %d %s", resp.StatusCode, resp.Proto)
	}
	return c
}
