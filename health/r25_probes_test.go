package health

import (
	"bufio"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// r25ProbesServer is a raw backend on 127.0.0.1 that counts the
// connections it accepts and those the prober has closed (a read that
// ends in EOF or a reset). answer is called for each connection after the
// request head was read (http) or at once (tcp, read is false); it may
// write anything and returns whether to then wait for the prober's close.
type r25ProbesServer struct {
	addr     string
	accepted atomic.Int64
	closed   atomic.Int64
}

func r25ProbesListen(t *testing.T, readHead bool, answer func(c net.Conn) bool) *r25ProbesServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &r25ProbesServer{addr: ln.Addr().String()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				stop := r25ProbesAfterClose(done, c)
				defer stop()
				br := bufio.NewReader(c)
				if readHead {
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							s.closed.Add(1)
							return
						}
						if line == "\r\n" {
							break
						}
					}
				}
				if answer != nil && !answer(c) {
					return
				}
				buf := make([]byte, 512)
				for {
					if _, err := br.Read(buf); err != nil {
						s.closed.Add(1)
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	return s
}

// r25ProbesAfterClose closes c when done is closed, until stop is called.
func r25ProbesAfterClose(done <-chan struct{}, c net.Conn) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-done:
			c.Close()
		case <-quit:
		}
	})
	return func() { close(quit); wg.Wait() }
}

// r25ProbesFDs counts this process's open file descriptors.
func r25ProbesFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestProbesEveryConnClosed: README "One goroutine per backend
// probes it on a fresh connection": each probe, http or tcp, opens one
// connection and closes it (the backend sees every one closed, the
// prober's process keeps no descriptor), also for an answer whose body is
// never read. Passes.
func TestProbesEveryConnClosed(t *testing.T) {
	for _, tt := range []struct {
		name     string
		typ      string
		readHead bool
		answer   string
	}{
		{"http", "http", true, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
		{"http unread body", "http", true, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("b", 100000)},
		{"http failing", "http", true, "HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n"},
		{"tcp", "tcp", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := r25ProbesListen(t, tt.readHead, func(c net.Conn) bool {
				if tt.answer != "" {
					_, _ = c.Write([]byte(tt.answer))
				}
				return true
			})
			before := r25ProbesFDs(t)
			var results atomic.Int64
			c := NewChecker(CheckerOptions{OnResult: func(string, string, bool) { results.Add(1) }})
			hc := httpCheck()
			hc.Type = tt.typ
			hc.Interval = 5 * time.Millisecond
			c.Update([]Target{{Pool: "p", Addr: s.addr, Check: hc}})
			waitFor(t, "40 probes", func() bool { return results.Load() >= 40 })
			c.Close()
			n := results.Load()
			if a := s.accepted.Load(); a < n || a > n+1 {
				t.Errorf("%d connections for %d probes, want one each (+1 cut by Close)", a, n)
			}
			waitFor(t, "every probe connection closed", func() bool { return s.closed.Load() == s.accepted.Load() })
			// The backend's side closes on the prober's close: give it
			// a moment, then compare this process's descriptors.
			var after int
			for range 100 {
				if after = r25ProbesFDs(t); after <= before {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if after > before {
				t.Errorf("%d descriptors after %d probes, %d before", after, n, before)
			}
		})
	}
}

// TestProbesInterimThenClose: an interim 100 followed by a close
// is no final answer: the probe fails with "read: connection closed" (the
// data plane answers 502), and a 101 (not interim, not asked for) is a
// final status outside the default 200-399. Passes.
func TestProbesInterimThenClose(t *testing.T) {
	for _, tt := range []struct{ name, answer, reason string }{
		{"100 then close", "HTTP/1.1 100 Continue\r\n\r\n", "read: connection closed"},
		{"103 then close mid head", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-", "read: connection closed"},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "status 101"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := r25ProbesListen(t, true, func(c net.Conn) bool {
				_, _ = c.Write([]byte(tt.answer))
				return false
			})
			rec := newRecorder()
			c := newTestChecker(t, rec.options())
			hc := httpCheck()
			c.Update([]Target{{Pool: "p", Addr: s.addr, Check: hc}})
			if e := rec.next(t); e.Healthy || e.Reason != tt.reason {
				t.Errorf("event %+v, want unhealthy %q", e, tt.reason)
			}
		})
	}
}

// TestProbesNoProbeAfterClose: Close stops every probe loop: no
// connection reaches any backend after it returns, the hanging probes'
// connections are closed, and no callback runs after it. Passes.
func TestProbesNoProbeAfterClose(t *testing.T) {
	var servers []*r25ProbesServer
	var targets []Target
	hc := httpCheck()
	hc.Interval = 10 * time.Millisecond
	hc.Timeout = 5 * time.Second
	for i := range 12 {
		var s *r25ProbesServer
		if i%2 == 0 {
			s = r25ProbesListen(t, true, nil) // never answers
		} else {
			s = r25ProbesListen(t, true, func(c net.Conn) bool {
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
				return true
			})
		}
		servers = append(servers, s)
		targets = append(targets, Target{Pool: "p", Addr: s.addr, Check: hc})
	}
	var after atomic.Bool
	var late atomic.Int64
	cb := func() {
		if after.Load() {
			late.Add(1)
		}
	}
	c := NewChecker(CheckerOptions{
		OnChange: func(Event) { cb() },
		OnResult: func(string, string, bool) { cb() },
	})
	c.Update(targets)
	waitFor(t, "every backend probed", func() bool {
		for _, s := range servers {
			if s.accepted.Load() < 1 {
				return false
			}
		}
		return servers[1].accepted.Load() >= 5
	})
	c.Close()
	after.Store(true)
	// A connection the kernel took before Close returned may reach Accept
	// just after: count from once all are accepted and closed.
	time.Sleep(20 * time.Millisecond)
	waitFor(t, "every probe connection closed", func() bool {
		for _, s := range servers {
			if s.closed.Load() != s.accepted.Load() {
				return false
			}
		}
		return true
	})
	var acc []int64
	for _, s := range servers {
		acc = append(acc, s.accepted.Load())
	}
	time.Sleep(100 * time.Millisecond) // ten intervals
	for i, s := range servers {
		if got := s.accepted.Load(); got != acc[i] {
			t.Errorf("backend %d: %d connections after Close", i, got-acc[i])
		}
	}
	if n := late.Load(); n != 0 {
		t.Errorf("%d callbacks after Close returned", n)
	}
}
