package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsReviewDownstreamConns: sluice_downstream_connections
// follows the client connections of a real sluice (no test scraped it
// before): held connections count, a refused one does not, and the gauge
// returns to 0 once all have closed. The start's load sets the generation
// and the last-success timestamp without counting a reload.
func TestMetricsReviewDownstreamConns(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nlimits: {max_client_conns: 3}\n"+
		"routes: [{pool: p}]\npools:\n  p:\n    backends:\n      - {address: %s}\n", listen, admin, up.addr))
	before := float64(time.Now().Add(-time.Second).Unix())
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	metric := func(name string) float64 {
		for _, line := range strings.Split(getBody(t, "http://"+admin+"/metrics"), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	if v := metric("sluice_config_last_reload_success_timestamp_seconds"); v < before || v > float64(time.Now().Unix()+1) {
		t.Errorf("last_reload_success_timestamp_seconds = %v at start, want about now", v)
	}
	if v := metric(`sluice_config_reloads_total{result="success"}`); v != 0 {
		t.Errorf("reloads success = %v at start, want 0", v)
	}
	waitUntil(t, "no connections", 5*time.Second, func() bool { return metric("sluice_downstream_connections") == 0 })
	a, b, c := dialServed(t, listen), dialServed(t, listen), dialServed(t, listen)
	if v := metric("sluice_downstream_connections"); v != 3 {
		t.Errorf("downstream_connections = %v with 3 held, want 3", v)
	}
	refusedBefore := metric("sluice_downstream_connections_refused_total")
	d, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the fourth refused", 5*time.Second, func() bool {
		return metric("sluice_downstream_connections_refused_total") == refusedBefore+1
	})
	d.Close()
	if v := metric("sluice_downstream_connections"); v != 3 {
		t.Errorf("downstream_connections = %v after a refusal, want 3", v)
	}
	a.Close()
	b.Close()
	c.Close()
	waitUntil(t, "connections closed", 5*time.Second, func() bool { return metric("sluice_downstream_connections") == 0 })
}
