package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func overdueYAML(addr string, response int) string {
	return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
drain_timeout: 200ms
timeouts: { response: %ds, upstream_idle: 30s }
`, addr, response)
}

// Found by review. What was wrong: every reload that replaces a backend's upstream client (new
// timeouts or limits) leaves one entry in Controller.overdue for good
// while the backend keeps a connection open, though the old client had
// nothing in flight and no connection of its own. The replaced client
// shares its `open` counter with its successor (reconcile,
// control.go:339 `fresh.client.open = m.up.client.open`), and
// finishDrains (control.go:614-624) keeps a drain as "overdue" while
// `d.up.client.ConnsCount() > 0`, which counts the successor's
// connections. On a busy backend that count never reaches 0, so each such
// reload adds one upstream (its slot array alone is
// max_conns_per_backend x 32 bytes, 32 KiB by default) per backend that
// is never freed, and onTick walks the growing list every tick. Expected:
// a drain whose requests all ended (in flight 0) is forgotten, as README
// says of a drained client ("Requests still running at the deadline are
// not cut"; nothing is kept once none run). Fix: keep a drain overdue
// only while `d.up.client.InFlight() > 0` (a closed client's connections
// close as their requests end, so its own count is 0 then), or track the
// client's own connections apart from the shared count.
func TestOverdueNotKeptForSharedConns(t *testing.T) {
	b := startBackend(t, "a", nil)
	px := startProxy(t, overdueYAML(b.addr(), 5))
	c := testClient(t)
	if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
		t.Fatalf("GET = %d, want 200", code)
	}
	const reloads = 5
	for i := range reloads {
		apply(t, px, overdueYAML(b.addr(), 6+i))
		// The new client opens its own connection, which stays idle.
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("GET after reload %d = %d, want 200", i, code)
		}
		waitFor(t, "the replaced client's drain to end", 5*time.Second, func() bool {
			n := -1
			_ = px.ctrl.do(context.Background(), func() error { n = len(px.ctrl.draining); return nil })
			return n == 0
		})
	}
	time.Sleep(300 * time.Millisecond) // a few more ticks of finishDrains
	var overdue, inFlight int
	_ = px.ctrl.do(context.Background(), func() error {
		overdue = len(px.ctrl.overdue)
		for _, d := range px.ctrl.overdue {
			inFlight += int(d.up.client.InFlight())
		}
		return nil
	})
	if overdue != 0 {
		t.Errorf("after %d settings reloads with nothing in flight, %d drained clients are kept as overdue (their requests in flight: %d), want 0", reloads, overdue, inFlight)
	}
}
