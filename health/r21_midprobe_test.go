package health

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// r21Holder accepts probes, reads their request and never answers;
// closed counts the connections the prober has hung up.
func r21Holder(t *testing.T) (addr string, accepted, closed *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted, closed = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						closed.Add(1)
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), accepted, closed
}

// A backend removed, or removed and added back under a new epoch, while
// its probe hangs: Update cuts the probe short at once and closes its
// connection, no callback of the old run comes after Update returns, and
// the new run starts afresh (its first failure reported with the new
// epoch).
func TestRemovedMidProbe(t *testing.T) {
	addr, accepted, closed := r21Holder(t)
	var mu sync.Mutex
	var events []Event
	var results atomic.Int64
	c := newTestChecker(t, CheckerOptions{
		OnChange: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() },
		OnResult: func(string, string, bool) { results.Add(1) },
		Rand:     func() float64 { return 0 },
	})
	hc := httpCheck()
	hc.Timeout = 30 * time.Second
	hc.Interval = 50 * time.Millisecond
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc, Epoch: 1}})
	waitFor(t, "the probe to hang", func() bool { return accepted.Load() == 1 })

	start := time.Now()
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc, Epoch: 2}})
	if d := time.Since(start); d > hc.Timeout/3 {
		// Not a timing bound: an Update that waited for the hanging
		// probe would take its whole timeout.
		t.Errorf("Update took %v with a hanging probe (timeout %v)", d, hc.Timeout)
	}
	waitFor(t, "the cut probe's connection closed", func() bool { return closed.Load() >= 1 })
	if n := results.Load(); n != 0 {
		t.Errorf("%d results from a probe cut short", n)
	}
	waitFor(t, "the new run's probe", func() bool { return accepted.Load() == 2 })
	c.Update(nil)
	waitFor(t, "every probe connection closed", func() bool { return closed.Load() == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 0 {
		t.Errorf("events %+v from probes cut short", events)
	}
}
