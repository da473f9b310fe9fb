package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Found by review. What was wrong: the admin API takes any spelling of a backend's address (README,
// Pools: "sluice uses one spelling per socket ... in metrics, logs, the
// admin API and hashing ...; the admin API takes any spelling"), and
// Controller.member finds the backend through config.BackendAddress, but
// SetDrain and SetWeight (proxy/status.go:171 and :188) log the address as
// the caller spelled it. `curl -X POST .../backends/127.0.0.1:09001/drain`
// logs "admin drain changed" with backend "127.0.0.1:09001" while every
// other line (backend added, upstream attempt failed, backend ejected) and
// every metric say "127.0.0.1:9001", so grepping the log for a backend
// misses its drain. Expected: the canonical spelling (the member's own
// address) in both lines.
func TestAdminChangeLogsBackendSpelling(t *testing.T) {
	// A free port, nothing listening: no request goes to it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	canonical := "127.0.0.1:" + strconv.Itoa(port)
	spelled := "127.0.0.1:0" + strconv.Itoa(port) // leading zero: the same socket

	var out logLines
	px := startProxyLogged(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: web }
pools:
  web: { backends: [{ address: %s }] }
`, canonical), nil, nil, zerolog.New(&out))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.ctrl.SetDrain(ctx, "web", spelled, true); err != nil {
		t.Fatalf("SetDrain(%q) = %v", spelled, err)
	}
	if err := px.ctrl.SetWeight(ctx, "web", spelled, 5); err != nil {
		t.Fatalf("SetWeight(%q) = %v", spelled, err)
	}
	for _, msg := range []string{"admin drain changed", "admin weight set"} {
		lines := out.with(t, msg)
		if len(lines) != 1 {
			t.Fatalf("%d %q lines, want 1", len(lines), msg)
		}
		if got := lines[0]["backend"]; got != canonical {
			t.Errorf("%q logs backend %q, want %q (the spelling of every other line and metric)", msg, got, canonical)
		}
	}
}
