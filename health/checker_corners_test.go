package health

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"sluice/config"
)

// hrDribble accepts connections, reads the request and answers one byte
// every step, never finishing a status line within a probe's timeout.
func hrDribble(t *testing.T, step time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 1024)
				_, _ = c.Read(buf)
				for _, b := range []byte("HTTP/1.1 200 OK but very slowly .................................") {
					select {
					case <-done:
						return
					case <-time.After(step):
					}
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// A probe to a black hole or to a backend that answers byte by byte is
// bounded by its timeout, reports the backend unhealthy, does not hold up
// probes of other backends, and an Update that removes it returns at once.
func TestHealthCornerHangingProbesBounded(t *testing.T) {
	hole, _ := blackHole(t)
	slow := hrDribble(t, 20*time.Millisecond)
	good := newTestBackend(t, nil)
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	hc.Timeout = 150 * time.Millisecond
	hc.UnhealthyThreshold = 1
	start := time.Now()
	c.Update([]Target{{Pool: "p", Addr: hole, Check: hc}, {Pool: "p", Addr: slow, Check: hc}, {Pool: "p", Addr: good.addr(), Check: hc}})
	got := map[string]Event{}
	for len(got) < 2 {
		e := r.next(t)
		got[e.Addr] = e
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hanging probes took %v to fail, timeout is 150ms", d)
	}
	for _, a := range []string{hole, slow} {
		if e, ok := got[a]; !ok || e.Healthy || e.Reason != "timeout" {
			t.Errorf("%s: event %+v, want unhealthy with reason timeout", a, e)
		}
	}
	if _, ok := got[good.addr()]; ok {
		t.Errorf("good backend got an event: %+v", got[good.addr()])
	}
	// Good probes went on meanwhile (20ms interval).
	if n := good.served.Load(); n < 3 {
		t.Errorf("good backend probed %d times while the others hung, want several", n)
	}
	// Removing both while their next probes hang returns quickly.
	time.Sleep(60 * time.Millisecond)
	t0 := time.Now()
	c.Update([]Target{{Pool: "p", Addr: good.addr(), Check: hc}})
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Errorf("Update removing hanging targets took %v", d)
	}
}

// A backend that sends an interim 1xx answer (103 Early Hints) before its
// final 200 is healthy: the probe must skip 1xx responses like any HTTP
// client does. Found by review: probe.go read only the first status
// line, saw 103, outside the default 200-399, and marked the backend
// unhealthy -- a fresh backend is taken out by its very first probe, and a
// pool of such backends (Go's net/http sends 103 when a handler asks for it)
// goes all 503.
func TestHealthCornerProbeSkipsInterim1xx(t *testing.T) {
	addr := rawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc}})
	waitFor(t, "a few probes", func() bool { return r.results.Load() >= 3 })
	select {
	case rec := <-r.events:
		t.Errorf("backend answering 103 then 200 got event %+v, want it to stay healthy", rec.e)
	default:
	}
	if ok, all := r.oks.Load(), r.results.Load(); ok != all {
		t.Errorf("%d of %d probes succeeded, want all (103 then 200)", ok, all)
	}
}

// hrStatusServer answers each probe on a loopback listener with the
// status code next returns (called one probe at a time), then closes.
func hrStatusServer(t *testing.T, next func() string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			_ = cn.SetDeadline(time.Now().Add(time.Second))
			_, _ = cn.Read(buf)
			_, _ = cn.Write([]byte("HTTP/1.1 " + next() + " X\r\nContent-Length: 0\r\n\r\n"))
			cn.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// Flapping: alternating results never reach a threshold of 2.
func TestHealthCornerFlappingNoTransition(t *testing.T) {
	n := 0
	ln := hrStatusServer(t, func() string {
		n++
		if n%2 == 0 {
			return "500"
		}
		return "200"
	})
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	hc.UnhealthyThreshold, hc.HealthyThreshold = 2, 2
	c.Update([]Target{{Pool: "p", Addr: ln.Addr().String(), Check: hc}})
	waitFor(t, "10 probes", func() bool { return r.results.Load() >= 10 })
	select {
	case rec := <-r.events:
		t.Errorf("flapping 200/500 with thresholds 2 gave event %+v", rec.e)
	default:
	}
}

// A reload that changes only the interval while a healthy backend has
// already failed fall-1 probes in a row: README says a changed check keeps
// "what is known". Found by review: the failure streak was dropped, so a
// dead backend kept taking traffic for another unhealthy_threshold probes. Each reload
// (e.g. an automated one every few seconds) restarts the count, so a
// backend can stay "healthy" while failing every probe.
func TestHealthCornerCheckChangeKeepsFailureStreak(t *testing.T) {
	var fail sync.Mutex
	failing := false
	probes := 0
	ln := hrStatusServer(t, func() string {
		fail.Lock()
		defer fail.Unlock()
		if failing {
			probes++
			return "500"
		}
		return "200"
	})
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	hc.Interval = 200 * time.Millisecond
	hc.UnhealthyThreshold = 3
	addr := ln.Addr().String()
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc}})
	waitFor(t, "first probe", func() bool { return r.oks.Load() >= 1 })
	fail.Lock()
	failing = true
	fail.Unlock()
	failed := func() int { fail.Lock(); defer fail.Unlock(); return probes }
	waitFor(t, "two failed probes", func() bool { return failed() >= 2 })
	time.Sleep(20 * time.Millisecond) // the second result is observed
	hc2 := hc
	hc2.Interval = 210 * time.Millisecond // a reload changes only the interval
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc2}})
	waitFor(t, "third failed probe", func() bool { return failed() >= 3 })
	select {
	case rec := <-r.events:
		if rec.e.Healthy {
			t.Fatalf("unexpected %+v", rec.e)
		}
	case <-time.After(150 * time.Millisecond):
		t.Errorf("3 consecutive failed probes (unhealthy_threshold 3), one after a reload that changed only the interval: still healthy (streak dropped on restart)")
	}
}

// Probes send the configured path and Host; without host, the address.
func TestHealthCornerProbeHostPath(t *testing.T) {
	b := newTestBackend(t, nil)
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	hc.Path, hc.Host = "/deep/check", "health.internal"
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: hc}})
	waitFor(t, "probe", func() bool { return b.served.Load() >= 1 })
	hosts, paths := b.seen()
	if hosts[0] != "health.internal" || paths[0] != "/deep/check" {
		t.Errorf("probe host %q path %q", hosts[0], paths[0])
	}
}

// Close leaves no goroutine behind, even with probes hanging.
func TestHealthCornerNoGoroutineLeak(t *testing.T) {
	hole, _ := blackHole(t)
	good := newTestBackend(t, nil)
	before := runtime.NumGoroutine()
	c := NewChecker(newRecorder().options())
	hc := httpCheck()
	hc.Timeout = 2 * time.Second
	var ts []Target
	for i := range 20 {
		a := hole
		if i%2 == 0 {
			a = good.addr()
		}
		ts = append(ts, Target{Pool: "p" + string(rune('a'+i)), Addr: a, Check: hc})
	}
	c.Update(ts)
	time.Sleep(100 * time.Millisecond)
	hc.Interval = 30 * time.Millisecond
	for i := range ts {
		ts[i].Check = hc
	}
	c.Update(ts) // restart all
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	c.Close()
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("Close took %v with hanging probes", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before, %d after Close", before, n)
	}
}

var _ = config.HealthCheck{}
