package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/metrics"
)

// Found by review. What was wrong: when max_ejection_percent refuses an ejection, eject()
// (proxy/control.go, "outlier not ejected: max_ejection_percent reached")
// writes a warn line and resets the backend's streak, so a backend that
// keeps failing writes one more line every consecutive_failures requests,
// without limit: two backends both answering 500 (a shared database down),
// one ejected, the other refused every streak. Here 300 failing requests
// in a fraction of a second write ~300 lines; at thousands of requests a
// second it is hundreds or thousands of lines a second. README ("Upstream
// failures in the process log") bounds exactly this case for per-request
// failure lines: "A backend that goes down under load fails thousands of
// requests a second, so at most 10 such lines are written a second"; the
// refusal line, one per streak, has no such bound. (Envoy counts refusals
// in a stat and logs nothing per refusal; HAProxy logs state changes only.)
// Expected: at most about 10 refusal lines a second (or one per backend
// until the pool's ejection state changes); actual: one per streak.
func TestOutlierRefusalLogBounded(t *testing.T) {
	a, b := newModalBackend(t, "a"), newModalBackend(t, "b")
	a.trafficStatus.Store(500)
	b.trafficStatus.Store(500)
	var logs syncBuffer
	y := fmt.Sprintf(`routes: [{ pool: p }]
retries: { attempts: 1 }
pools:
  p:
    outlier_detection: { consecutive_failures: 1, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }
    backends: [{ address: %s }, { address: %s }]
`, a.addr, b.addr)
	px := startProxyLogged(t, y, nil, nil, zerolog.New(&logs))
	c := testClient(t)
	start := time.Now()
	for range 300 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 500 {
			t.Fatalf("got %d, want the backends' 500 (one of two may be ejected at 50%%)", code)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // the last trips reach the control plane
	// The budget runs per Unix second, so 113 ms across a second's edge
	// may hold two seconds' lines (a clean-clone CI run saw 20).
	seconds := int(time.Now().Unix()-start.Unix()) + 1
	ejected := strings.Count(logs.String(), `"backend ejected"`)
	refused := strings.Count(logs.String(), "max_ejection_percent reached")
	if ejected != 1 {
		t.Fatalf("%d ejections logged, want 1 (two backends at max_ejection_percent 50)", ejected)
	}
	if limit := 10 * seconds; refused > limit {
		t.Errorf("%d \"outlier not ejected: max_ejection_percent reached\" warn lines for 300 requests in %v; want at most %d (10 a second, as for upstream failure lines)", refused, elapsed.Round(time.Millisecond), limit)
	}
}

// TestOutlierStreakBackoffDecay checks README's passive-check
// arithmetic end to end on one backend (a pool of one may always be
// ejected): consecutive_failures-1 failures then a 2xx or a 4xx answer end
// the streak; the n-th ejection lasts base_ejection_time × 2^(n-1) up to
// max_ejection_time, where the count stops growing; after two
// base_ejection_times back in the pool a backend at the cap is back to
// base_ejection_time; each ejection is one `backend ejected` line and one
// count of sluice_outlier_ejections_total.
func TestOutlierStreakBackoffDecay(t *testing.T) {
	b := newModalBackend(t, "a")
	var logs syncBuffer
	m := metrics.New("test")
	const base = 200 * time.Millisecond
	y := fmt.Sprintf(`routes: [{ pool: p }]
retries: { attempts: 1 }
pools:
  p:
    outlier_detection: { consecutive_failures: 3, base_ejection_time: 200ms, max_ejection_time: 600ms, max_ejection_percent: 100 }
    backends: [{ address: %s }]
`, b.addr)
	px := startProxyTicked(t, y, m, nil, zerolog.New(&logs), 5*time.Millisecond)
	c := testClient(t)
	send := func(code int32, n int) {
		t.Helper()
		b.trafficStatus.Store(code)
		for range n {
			if got, _, _ := get(t, c, "http://"+px.addr+"/", nil); got != int(code) {
				t.Fatalf("got %d, want the backend's %d (ejected early?)", got, code)
			}
		}
	}
	for _, end := range []int32{200, 404, 499} {
		send(500, 2)
		send(end, 1)
	}
	send(500, 2)
	send(200, 1)
	time.Sleep(30 * time.Millisecond)
	if stateOf(t, px, b.addr).Ejected {
		t.Fatal("ejected after streaks of 2 failures of 3, each ended by a non-5xx answer")
	}
	want := []time.Duration{base, 2 * base, 3 * base, 3 * base, base}
	for i, w := range want {
		if i == len(want)-1 {
			time.Sleep(2*base + 50*time.Millisecond) // the count (2, at the cap) decays to 0
		}
		send(500, 2)
		before := time.Now()
		send(500, 1)
		waitFor(t, "ejected", time.Second, func() bool { return stateOf(t, px, b.addr).Ejected })
		if d := stateOf(t, px, b.addr).EjectedUntil.Sub(before); d < w || d > w+150*time.Millisecond {
			t.Errorf("ejection %d lasts %v, want %v", i+1, d, w)
		}
		waitFor(t, "back", 2*time.Second, func() bool { return !stateOf(t, px, b.addr).Ejected })
	}
	if n := strings.Count(logs.String(), `"backend ejected"`); n != len(want) {
		t.Errorf("%d `backend ejected` lines, want %d", n, len(want))
	}
	if n := reviewSum(gatherCounts(t, m, "sluice_outlier_ejections_total"), b.addr); n != float64(len(want)) {
		t.Errorf("sluice_outlier_ejections_total = %v, want %d", n, len(want))
	}
}

// TestOutlierFailureKinds: each failure README counts
// (connect errors, resets, a connection closed without an answer,
// timeouts) ejects a backend at consecutive_failures, also when the
// request was retried on another backend and succeeded there.
func TestOutlierFailureKinds(t *testing.T) {
	for _, kind := range []string{"refused", "reset", "close", "timeout"} {
		t.Run(kind, func(t *testing.T) {
			good := newModalBackend(t, "good")
			bad := r23FailingAddr(t, kind)
			px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
timeouts: { response: 150ms }
retries: { attempts: 2 }
pools:
  p:
    algorithm: round_robin
    outlier_detection: { consecutive_failures: 3, base_ejection_time: 1h, max_ejection_time: 2h, max_ejection_percent: 50 }
    backends: [{ address: %s }, { address: %s }]
`, good.addr, bad))
			c := testClient(t)
			for range 12 {
				get(t, c, "http://"+px.addr+"/", nil)
			}
			if !waitEjected(t, px, bad) {
				t.Errorf("%s backend not ejected after 12 requests at consecutive_failures 3", kind)
			}
			for range 10 {
				if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
					t.Fatalf("GET after ejection = %d, want 200", code)
				}
			}
		})
	}
}

// r23FailingAddr is a backend address that fails every request the
// way kind says: refused (nothing listens), reset (RST after reading the
// request), close (FIN after reading it, no answer), timeout (never
// answers).
func r23FailingAddr(t *testing.T, kind string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if kind == "refused" {
		ln.Close()
		return addr
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer cn.Close()
				_ = cn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := cn.Read(make([]byte, 4096)); err != nil {
					return
				}
				switch kind {
				case "reset":
					_ = cn.(*net.TCPConn).SetLinger(0)
				case "timeout":
					<-stop
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); close(stop); wg.Wait() })
	return addr
}
