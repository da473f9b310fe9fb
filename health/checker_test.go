package health

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

// testBackend is a real HTTP server on 127.0.0.1 whose answers the test
// controls, and which counts what it sees.
type testBackend struct {
	srv    *httptest.Server
	status atomic.Int32
	delay  atomic.Int64 // per request, in nanoseconds

	served atomic.Int64
	streak atomic.Int64 // consecutive answers with the current status
	last   atomic.Int32 // status of the last answer
	maxIn  atomic.Int64
	shared *gauge // in flight over several backends; may be nil

	mu    sync.Mutex
	hosts []string
	paths []string
}

// gauge counts requests in flight and remembers the most seen at once.
type gauge struct{ cur, max atomic.Int64 }

func (g *gauge) inc() {
	n := g.cur.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
}

func (g *gauge) dec() { g.cur.Add(-1) }

func newTestBackend(t *testing.T, shared *gauge) *testBackend {
	t.Helper()
	b := &testBackend{shared: shared}
	b.status.Store(http.StatusOK)
	own := &gauge{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		own.inc()
		if b.shared != nil {
			b.shared.inc()
		}
		b.mu.Lock()
		b.hosts = append(b.hosts, r.Host)
		b.paths = append(b.paths, r.URL.Path)
		b.mu.Unlock()
		if d := b.delay.Load(); d > 0 {
			select {
			case <-time.After(time.Duration(d)):
			case <-r.Context().Done(): // the prober gave up
			}
		}
		code := b.status.Load()
		if b.last.Swap(code) == code {
			b.streak.Add(1)
		} else {
			b.streak.Store(1)
		}
		b.served.Add(1)
		// Leave before answering, so the prober cannot see the answer
		// (and start another probe) while this one still counts.
		b.maxIn.Store(own.max.Load())
		own.dec()
		if b.shared != nil {
			b.shared.dec()
		}
		w.WriteHeader(int(code))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

func (b *testBackend) seen() (hosts, paths []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.hosts...), append([]string(nil), b.paths...)
}

// recorder collects what a Checker reports.
type recorder struct {
	events  chan recorded
	results atomic.Int64
	oks     atomic.Int64
	// streakAt, when set before the Checker starts, is read at each event
	// from the probe goroutine.
	streakAt func() int64
	// streak is streakAt's value at the event last returned by next.
	streak int64
	log    syncBuffer
}

type recorded struct {
	e      Event
	streak int64
}

func newRecorder() *recorder {
	return &recorder{events: make(chan recorded, 100)}
}

func (r *recorder) options() CheckerOptions {
	return CheckerOptions{
		Logger: zerolog.New(&r.log),
		OnChange: func(e Event) {
			rec := recorded{e: e}
			if r.streakAt != nil {
				rec.streak = r.streakAt()
			}
			r.events <- rec
		},
		OnResult: func(pool, addr string, ok bool) {
			r.results.Add(1)
			if ok {
				r.oks.Add(1)
			}
		},
		Rand: func() float64 { return 0.5 },
	}
}

func (r *recorder) next(t *testing.T) Event {
	t.Helper()
	select {
	case rec := <-r.events:
		r.streak = rec.streak
		return rec.e
	case <-time.After(waitTimeout):
		t.Fatal("no event")
		return Event{}
	}
}

// quiet fails if an event arrives within d.
func (r *recorder) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case rec := <-r.events:
		t.Fatalf("unexpected event %+v", rec.e)
	case <-time.After(d):
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.buf.String(), substr)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newTestChecker(t *testing.T, opts CheckerOptions) *Checker {
	t.Helper()
	c := NewChecker(opts)
	t.Cleanup(c.Close)
	return c
}

func httpCheck() config.HealthCheck {
	return config.HealthCheck{
		Type:               "http",
		Path:               "/healthz",
		Interval:           20 * time.Millisecond,
		Timeout:            500 * time.Millisecond,
		HealthyThreshold:   2,
		UnhealthyThreshold: 3,
	}
}

func TestCheckerHealthyBackendSendsNoEvent(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	c.Update([]Target{{Pool: "web", Addr: b.addr(), Check: httpCheck()}})
	waitFor(t, "5 probes", func() bool { return rec.oks.Load() >= 5 })
	rec.quiet(t, 50*time.Millisecond)
	if n := rec.log.count("backend"); n != 0 {
		t.Errorf("%d log lines about backends, want 0", n)
	}
}

// A backend turns unhealthy after exactly UnhealthyThreshold failed probes,
// and healthy again after exactly HealthyThreshold good ones.
func TestCheckerThresholds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rise, fall int
	}{
		{name: "rise=1/fall=1", rise: 1, fall: 1},
		{name: "rise=2/fall=3", rise: 2, fall: 3},
		{name: "rise=3/fall=2", rise: 3, fall: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newTestBackend(t, nil)
			rec := newRecorder()
			rec.streakAt = b.streak.Load
			c := newTestChecker(t, rec.options())
			check := httpCheck()
			check.HealthyThreshold, check.UnhealthyThreshold = tt.rise, tt.fall
			c.Update([]Target{{Pool: "web", Addr: b.addr(), Check: check}})
			waitFor(t, "a good probe", func() bool { return rec.oks.Load() >= 1 })

			b.status.Store(http.StatusServiceUnavailable)
			e := rec.next(t)
			want := Event{Pool: "web", Addr: b.addr(), Healthy: false, Reason: "status 503", Source: SourceActive}
			if e != want {
				t.Fatalf("event = %+v, want %+v", e, want)
			}
			if got := rec.streak; got != int64(tt.fall) {
				t.Errorf("unhealthy after %d failed probes, want %d", got, tt.fall)
			}

			b.status.Store(http.StatusNoContent)
			e = rec.next(t)
			want = Event{Pool: "web", Addr: b.addr(), Healthy: true, Reason: "status 204", Source: SourceActive}
			if e != want {
				t.Fatalf("event = %+v, want %+v", e, want)
			}
			if got := rec.streak; got != int64(tt.rise) {
				t.Errorf("healthy after %d good probes, want %d", got, tt.rise)
			}
			rec.quiet(t, 30*time.Millisecond)
			if got := rec.log.count(`"message":"backend unhealthy"`); got != 1 {
				t.Errorf("%d unhealthy log lines, want 1", got)
			}
			if got := rec.log.count(`"message":"backend healthy"`); got != 1 {
				t.Errorf("%d healthy log lines, want 1", got)
			}
			if got := rec.log.count(`"pool":"web","backend":"` + b.addr() + `","reason":"status 503"`); got != 1 {
				t.Errorf("unhealthy log line lacks pool, backend or reason:\n%s", rec.log.buf.String())
			}
		})
	}
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) (addr string, closeFn func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	var once sync.Once
	closeFn = func() {
		once.Do(func() {
			ln.Close()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
	}
	t.Cleanup(closeFn)
	return ln.Addr().String(), closeFn
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// rawBackend answers every connection with the given bytes, then closes it.
func rawBackend(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 1024)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte(answer))
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// A new backend whose first probe fails is unhealthy at once.
func TestCheckerFirstProbeFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		addr       func(t *testing.T) string
		check      func(config.HealthCheck) config.HealthCheck
		wantReason string
	}{
		{
			name:       "connection refused",
			addr:       closedPort,
			wantReason: "connect: connection refused",
		},
		{
			name:       "black hole",
			addr:       func(t *testing.T) string { a, _ := blackHole(t); return a },
			check:      func(c config.HealthCheck) config.HealthCheck { c.Timeout = 50 * time.Millisecond; return c },
			wantReason: "timeout",
		},
		{
			name:       "tcp connection refused",
			addr:       closedPort,
			check:      func(c config.HealthCheck) config.HealthCheck { c.Type = "tcp"; return c },
			wantReason: "connect: connection refused",
		},
		{
			name: "status not expected",
			addr: func(t *testing.T) string { return newTestBackend(t, nil).addr() },
			check: func(c config.HealthCheck) config.HealthCheck {
				c.ExpectStatus = []config.StatusRange{{Lo: 204, Hi: 204}, {Lo: 300, Hi: 302}}
				return c
			},
			wantReason: "status 200",
		},
		{
			name:       "404 fails by default",
			addr:       func(t *testing.T) string { return rawBackend(t, "HTTP/1.1 404 Not Found\r\n\r\n") },
			wantReason: "status 404",
		},
		{
			name:       "closes without answer",
			addr:       func(t *testing.T) string { return rawBackend(t, "") },
			wantReason: "read: connection closed",
		},
		{
			name:       "not http",
			addr:       func(t *testing.T) string { return rawBackend(t, "SSH-2.0-OpenSSH_9.6\r\n") },
			wantReason: "bad response: malformed status line",
		},
		{
			name:       "bad host",
			addr:       func(t *testing.T) string { return newTestBackend(t, nil).addr() },
			check:      func(c config.HealthCheck) config.HealthCheck { c.Host = "a\r\nX-Evil: 1"; return c },
			wantReason: "invalid check: space or line break in path or host",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := tt.addr(t)
			rec := newRecorder()
			c := newTestChecker(t, rec.options())
			check := httpCheck()
			check.UnhealthyThreshold = 5
			if tt.check != nil {
				check = tt.check(check)
			}
			c.Update([]Target{{Pool: "p", Addr: addr, Check: check}})
			e := rec.next(t)
			want := Event{Pool: "p", Addr: addr, Healthy: false, Reason: tt.wantReason, Source: SourceActive}
			if e != want {
				t.Fatalf("event = %+v, want %+v", e, want)
			}
			if got := rec.results.Load(); got != 1 {
				t.Errorf("unhealthy after %d probes, want 1 (fast fail)", got)
			}
		})
	}
}

// A healthy backend that starts timing out goes unhealthy after the
// threshold, each probe cut at Timeout.
func TestCheckerTimeout(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	check := httpCheck()
	check.Timeout = 40 * time.Millisecond
	check.UnhealthyThreshold = 2
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: check}})
	waitFor(t, "a good probe", func() bool { return rec.oks.Load() >= 1 })
	b.delay.Store(int64(time.Second))
	start := time.Now()
	e := rec.next(t)
	if e.Healthy || e.Reason != "timeout" {
		t.Fatalf("event = %+v, want unhealthy with reason timeout", e)
	}
	// Two probes of 40ms and an interval of 20ms, give or take one probe
	// in flight: far less than the handler's 1s.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("unhealthy after %v, want about 2 timeouts", d)
	}
}

func TestCheckerTCP(t *testing.T) {
	t.Parallel()
	addr, closeFn := blackHole(t) // accepts: a tcp check passes
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	check := config.HealthCheck{Type: "tcp", Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond,
		HealthyThreshold: 1, UnhealthyThreshold: 2}
	c.Update([]Target{{Pool: "p", Addr: addr, Check: check}})
	waitFor(t, "3 probes", func() bool { return rec.oks.Load() >= 3 })
	rec.quiet(t, 10*time.Millisecond)
	closeFn()
	e := rec.next(t)
	want := Event{Pool: "p", Addr: addr, Healthy: false, Reason: "connect: connection refused", Source: SourceActive}
	if e != want {
		t.Fatalf("event = %+v, want %+v", e, want)
	}
}

func TestCheckerRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		host     string
		path     string
		wantHost string // "" means the backend's address
		wantPath string
	}{
		{name: "host header", host: "health.example", path: "/healthz", wantHost: "health.example", wantPath: "/healthz"},
		{name: "default host", path: "/status/ready", wantPath: "/status/ready"},
		{name: "default path", host: "h.example:8080", wantHost: "h.example:8080", wantPath: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newTestBackend(t, nil)
			rec := newRecorder()
			c := newTestChecker(t, rec.options())
			check := httpCheck()
			check.Host, check.Path = tt.host, tt.path
			c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: check}})
			waitFor(t, "2 probes", func() bool { return rec.oks.Load() >= 2 })
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = b.addr()
			}
			hosts, paths := b.seen()
			for i := range hosts {
				if hosts[i] != wantHost || paths[i] != tt.wantPath {
					t.Fatalf("request %d: host %q path %q, want %q %q", i, hosts[i], paths[i], wantHost, tt.wantPath)
				}
			}
		})
	}
}

// Probes of one backend never overlap, even when slower than the interval,
// and do not pile up.
func TestCheckerNoOverlap(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	b.delay.Store(int64(40 * time.Millisecond))
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	check := httpCheck()
	check.Interval = time.Millisecond
	check.Timeout = time.Second
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: check}})
	start := time.Now()
	waitFor(t, "5 probes", func() bool { return b.served.Load() >= 5 })
	if got := b.maxIn.Load(); got != 1 {
		t.Errorf("at most %d probes in flight on one backend, want 1", got)
	}
	if d := time.Since(start); d < 5*40*time.Millisecond {
		t.Errorf("5 probes of 40ms took %v: they overlapped", d)
	}
	rec.quiet(t, 0)
}

func TestCheckerMaxConcurrent(t *testing.T) {
	t.Parallel()
	const backends, limit = 6, 2
	shared := &gauge{}
	rec := newRecorder()
	opts := rec.options()
	opts.MaxConcurrent = limit
	c := newTestChecker(t, opts)
	var targets []Target
	var all []*testBackend
	check := httpCheck()
	check.Interval = time.Millisecond
	for range backends {
		b := newTestBackend(t, shared)
		b.delay.Store(int64(15 * time.Millisecond))
		all = append(all, b)
		targets = append(targets, Target{Pool: "p", Addr: b.addr(), Check: check})
	}
	c.Update(targets)
	waitFor(t, "every backend probed twice", func() bool {
		for _, b := range all {
			if b.served.Load() < 2 {
				return false
			}
		}
		return true
	})
	if got := shared.max.Load(); got > limit {
		t.Errorf("%d probes in flight at once, want at most %d", got, limit)
	}
	t.Logf("max in flight: %d", shared.max.Load())
	rec.quiet(t, 0)
}

func TestCheckerUpdate(t *testing.T) {
	t.Parallel()
	a, b := newTestBackend(t, nil), newTestBackend(t, nil)
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	check := httpCheck()
	c.Update([]Target{
		{Pool: "p", Addr: a.addr(), Check: check},
		{Pool: "p", Addr: b.addr(), Check: check},
	})
	waitFor(t, "both probed", func() bool { return a.served.Load() >= 2 && b.served.Load() >= 2 })

	// Same set again: nothing restarts.
	c.Update([]Target{
		{Pool: "p", Addr: b.addr(), Check: check},
		{Pool: "p", Addr: a.addr(), Check: check},
	})
	if got := started(c); got != 2 {
		t.Fatalf("%d probe goroutines started, want 2", got)
	}

	// Remove b: it is no longer probed once Update returns.
	c.Update([]Target{{Pool: "p", Addr: a.addr(), Check: check}})
	n := b.served.Load()
	time.Sleep(80 * time.Millisecond)
	if got := b.served.Load(); got != n {
		t.Errorf("removed backend probed %d more times", got-n)
	}
	if got := running(c); got != 1 {
		t.Errorf("%d probes running, want 1", got)
	}

	// Change a's check: a restarts with the new path.
	changed := check
	changed.Path = "/other"
	c.Update([]Target{{Pool: "p", Addr: a.addr(), Check: changed}})
	if got := started(c); got != 3 {
		t.Fatalf("%d probe goroutines started, want 3", got)
	}
	waitFor(t, "probe of the new path", func() bool {
		_, paths := a.seen()
		return paths[len(paths)-1] == "/other"
	})

	// The same backend in two pools is two targets.
	c.Update([]Target{
		{Pool: "p", Addr: a.addr(), Check: changed},
		{Pool: "q", Addr: a.addr(), Check: changed},
	})
	if got := running(c); got != 2 {
		t.Errorf("%d probes running, want 2", got)
	}

	c.Update(nil)
	if got := running(c); got != 0 {
		t.Errorf("%d probes running after Update(nil), want 0", got)
	}
	rec.quiet(t, 0)
}

// A restarted probe keeps the backend's state: no event is lost or
// repeated.
func TestCheckerUpdateKeepsState(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	rec := newRecorder()
	rec.streakAt = b.streak.Load
	c := newTestChecker(t, rec.options())
	check := httpCheck()
	check.UnhealthyThreshold = 1
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: check}})
	waitFor(t, "a good probe", func() bool { return rec.oks.Load() >= 1 })
	b.status.Store(http.StatusInternalServerError)
	if e := rec.next(t); e.Healthy {
		t.Fatalf("event = %+v, want unhealthy", e)
	}

	changed := check
	changed.Path = "/other"
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: changed}})
	n := rec.results.Load()
	waitFor(t, "3 more probes", func() bool { return rec.results.Load() >= n+3 })
	rec.quiet(t, 0) // still unhealthy: no second event

	b.status.Store(http.StatusOK)
	if e := rec.next(t); !e.Healthy {
		t.Fatalf("event = %+v, want healthy", e)
	}
	// A healthy state carries over too: after a restart it takes
	// UnhealthyThreshold failures again, not a fast fail.
	changed.UnhealthyThreshold = 3
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: changed}})
	b.status.Store(http.StatusBadGateway)
	if e := rec.next(t); e.Healthy || e.Reason != "status 502" {
		t.Fatalf("event = %+v, want unhealthy with status 502", e)
	}
	if got := rec.streak; got != 3 {
		t.Errorf("unhealthy after %d failed probes, want 3", got)
	}
}

func TestCheckerClose(t *testing.T) {
	t.Parallel()
	hole, _ := blackHole(t)
	b := newTestBackend(t, nil)
	rec := newRecorder()
	c := NewChecker(rec.options())
	slow := httpCheck()
	slow.Timeout = 10 * time.Second
	c.Update([]Target{
		{Pool: "p", Addr: hole, Check: slow},
		{Pool: "p", Addr: b.addr(), Check: httpCheck()},
	})
	waitFor(t, "a good probe", func() bool { return rec.oks.Load() >= 1 })
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close() took %v with a probe stuck on a black hole", d)
	}
	if got := running(c); got != 0 {
		t.Errorf("%d probes running after Close, want 0", got)
	}
	n := b.served.Load()
	c.Close() // twice is fine
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: httpCheck()}})
	time.Sleep(50 * time.Millisecond)
	if got := b.served.Load(); got != n || running(c) != 0 {
		t.Errorf("Update after Close probed %d times", got-n)
	}
	rec.quiet(t, 0) // a stopped probe reports nothing
}

// The Checker works with an Inbox as OnChange, the intended wiring.
func TestCheckerWithInbox(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	in := NewInbox()
	c := newTestChecker(t, CheckerOptions{OnChange: in.Put, MaxConcurrent: 1})
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: httpCheck()}, {Pool: "p", Addr: closedPort(t), Check: httpCheck()}})
	select {
	case <-in.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("no event")
	}
	got := in.Take(nil)
	if len(got) != 1 || got[0].Healthy || got[0].Addr == b.addr() {
		t.Errorf("Take() = %+v, want the closed port unhealthy", got)
	}
}

func started(c *Checker) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probesStarted
}

func running(c *Checker) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.probes)
}
