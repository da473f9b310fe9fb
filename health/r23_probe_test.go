package health

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// r23Capture is a raw backend on 127.0.0.1 that records each probe's
// request head as sent and when it arrived, then writes answer and, when
// hold is set, keeps writing body bytes until the prober hangs up.
type r23Capture struct {
	addr   string
	mu     sync.Mutex
	heads  []string
	arrive []time.Time
	ends   []time.Time // when the prober hung up (read EOF)
}

func r23CaptureBackend(t *testing.T, answer string, endless bool) *r23Capture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &r23Capture{addr: ln.Addr().String()}
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
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" || line == "\n" {
						break
					}
				}
				b.mu.Lock()
				b.heads = append(b.heads, head.String())
				b.arrive = append(b.arrive, time.Now())
				b.mu.Unlock()
				if _, err := c.Write([]byte(answer)); err != nil {
					return
				}
				if endless {
					chunk := []byte("400\r\n" + strings.Repeat("x", 1024) + "\r\n")
					for {
						select {
						case <-done:
							return
						default:
						}
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				}
				// Wait for the prober to hang up.
				_, _ = br.ReadByte()
				b.mu.Lock()
				b.ends = append(b.ends, time.Now())
				b.mu.Unlock()
			})
		}
	})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	return b
}

func (b *r23Capture) snapshot() (heads []string, arrive []time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.heads...), append([]time.Time(nil), b.arrive...)
}

// TestProbeRequestAsSent: the probe is exactly one HTTP/1.1 GET of
// the check path with the backend's address as Host (health_check.host
// when set), a User-Agent, and Connection: close (a fresh connection per
// probe, README "Active checks"); no body, no other surprises. Passes.
func TestProbeRequestAsSent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, host, wantHost string }{
		{"default host", "", ""},
		{"host set", "health.internal:8443", "health.internal:8443"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := r23CaptureBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
			rec := newRecorder()
			c := newTestChecker(t, rec.options())
			hc := httpCheck()
			hc.Path, hc.Host = "/ready?full=1", tt.host
			c.Update([]Target{{Pool: "p", Addr: b.addr, Check: hc}})
			waitFor(t, "2 probes", func() bool { return rec.oks.Load() >= 2 })
			want := tt.wantHost
			if want == "" {
				want = b.addr
			}
			heads, _ := b.snapshot()
			for _, h := range heads[:2] {
				lines := strings.Split(strings.TrimSuffix(h, "\r\n\r\n"), "\r\n")
				if lines[0] != "GET /ready?full=1 HTTP/1.1" {
					t.Errorf("request line %q", lines[0])
				}
				fields := map[string][]string{}
				for _, l := range lines[1:] {
					k, v, _ := strings.Cut(l, ": ")
					fields[http.CanonicalHeaderKey(k)] = append(fields[http.CanonicalHeaderKey(k)], v)
				}
				if got := fields["Host"]; len(got) != 1 || got[0] != want {
					t.Errorf("Host %q, want one %q", got, want)
				}
				if got := fields["Connection"]; len(got) != 1 || !strings.EqualFold(got[0], "close") {
					t.Errorf("Connection %q, want close", got)
				}
				if len(fields["User-Agent"]) != 1 {
					t.Errorf("User-Agent %q, want one", fields["User-Agent"])
				}
				if fields["Content-Length"] != nil || fields["Transfer-Encoding"] != nil {
					t.Errorf("probe announces a body: %q", h)
				}
			}
			rec.quiet(t, 0)
		})
	}
}

// TestProbeHostIPv6Default: a backend at [::1]:port gets
// "Host: [::1]:port" (brackets kept), a valid Host header. Passes.
func TestProbeHostIPv6Default(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	var host atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host.Store(r.Host) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	addr := ln.Addr().String()
	c.Update([]Target{{Pool: "p", Addr: addr, Check: httpCheck()}})
	waitFor(t, "a good probe", func() bool { return rec.oks.Load() >= 1 })
	if got, _ := host.Load().(string); got != addr {
		t.Errorf("Host %q, want %q", got, addr)
	}
	rec.quiet(t, 0)
}

// TestProbeReadsHeadNotBody: a backend whose answer's body never
// ends (an endless chunked stream) passes at once: the probe reads the
// head only and hangs up, well within its timeout. Passes.
func TestProbeReadsHeadNotBody(t *testing.T) {
	t.Parallel()
	b := r23CaptureBackend(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true)
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	hc := httpCheck()
	hc.Timeout = 2 * time.Second
	hc.Interval = 50 * time.Millisecond
	hc.UnhealthyThreshold = 1
	start := time.Now()
	c.Update([]Target{{Pool: "p", Addr: b.addr, Check: hc}})
	waitFor(t, "3 probes", func() bool { return rec.results.Load() >= 3 })
	if ok := rec.oks.Load(); ok != rec.results.Load() {
		t.Errorf("%d of %d probes passed, want all", ok, rec.results.Load())
	}
	// 3 probes a 50ms interval apart: far from one 2s timeout.
	if d := time.Since(start); d > time.Second {
		t.Errorf("3 probes took %v: the probe waited on the endless body", d)
	}
	rec.quiet(t, 0)
}

// TestProbeSlowWithinTimeout: a backend answering in 120ms under a
// 400ms timeout is healthy (no event), one answering after the timeout
// is failed with "timeout" at about the timeout. Passes.
func TestProbeSlowWithinTimeout(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	b.delay.Store(int64(120 * time.Millisecond))
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	hc := httpCheck()
	hc.Timeout = 400 * time.Millisecond
	hc.UnhealthyThreshold = 1
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: hc}})
	waitFor(t, "3 probes", func() bool { return rec.results.Load() >= 3 })
	rec.quiet(t, 0)
	if ok := rec.oks.Load(); ok != rec.results.Load() {
		t.Fatalf("%d of %d slow-but-timely probes passed", ok, rec.results.Load())
	}
	b.delay.Store(int64(2 * time.Second))
	n := rec.results.Load()
	e := rec.next(t)
	if e.Healthy || e.Reason != "timeout" {
		t.Fatalf("event %+v, want unhealthy timeout", e)
	}
	if got := rec.results.Load() - n; got > 2 {
		t.Errorf("%d probes before the timeout counted, want 1 (or 2 with one in flight)", got)
	}
}

// TestIntervalJitterBounds: with the real random source, the next
// probe starts 0.9 to 1.1 intervals after the previous one ended
// (README: "interval ... ±10% jitter"; "the next probe starts an interval
// after the previous one ended"), and the gaps are not all the same.
// Passes.
func TestIntervalJitterBounds(t *testing.T) {
	t.Parallel()
	b := r23CaptureBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
	c := newTestChecker(t, CheckerOptions{}) // real rand
	hc := httpCheck()
	hc.Interval = 100 * time.Millisecond
	c.Update([]Target{{Pool: "p", Addr: b.addr, Check: hc}})
	start := time.Now()
	waitFor(t, "12 probes", func() bool { _, a := b.snapshot(); return len(a) >= 12 })
	_, arrive := b.snapshot()
	if first := arrive[0].Sub(start); first > 300*time.Millisecond {
		t.Errorf("first probe after %v, want within interval/10 (+ scheduling)", first)
	}
	b.mu.Lock()
	ends := append([]time.Time(nil), b.ends...)
	b.mu.Unlock()
	var lo, hi time.Duration = time.Hour, 0
	for i := 1; i < len(arrive) && i-1 < len(ends); i++ {
		// From the server's view of the previous probe's end (which
		// comes after the prober's own) to the next arrival.
		gap := arrive[i].Sub(ends[i-1])
		lo, hi = min(lo, gap), max(hi, gap)
		if gap < 90*time.Millisecond-5*time.Millisecond {
			t.Errorf("probe %d started %v after the previous ended, want >= 90ms", i, gap)
		}
	}
	t.Logf("gaps %v..%v", lo, hi)
	if hi-lo < time.Millisecond {
		t.Errorf("gaps %v..%v: no jitter", lo, hi)
	}
}

// TestDefaultConcurrencyCap: 90 black-hole backends under the
// default options: exactly 64 probes are in flight (README "At most 64
// probes run at once across all pools"), the rest wait for a slot rather
// than fail. Passes.
func TestDefaultConcurrencyCap(t *testing.T) {
	const n = 90
	var accepted atomic.Int64
	var lns []net.Listener
	var conns sync.Map
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				conns.Store(c, true)
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	})
	rec := newRecorder()
	c := newTestChecker(t, CheckerOptions{OnResult: rec.options().OnResult})
	hc := httpCheck()
	hc.Interval = 50 * time.Millisecond
	hc.Timeout = 3 * time.Second
	var ts []Target
	for i, ln := range lns {
		ts = append(ts, Target{Pool: "p" + string(rune('a'+i%5)), Addr: ln.Addr().String(), Check: hc})
	}
	c.Update(ts)
	waitFor(t, "64 probes in flight", func() bool { return accepted.Load() >= DefaultMaxConcurrent })
	time.Sleep(150 * time.Millisecond) // room for a 65th, were there one
	if got := accepted.Load(); got != DefaultMaxConcurrent {
		t.Errorf("%d probes in flight before any timed out, want %d", got, DefaultMaxConcurrent)
	}
	if got := rec.results.Load(); got != 0 {
		t.Errorf("%d probes ended before their timeout", got)
	}
}
