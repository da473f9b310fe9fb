package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/metrics"
)

// r25DrainBackend is a loopback backend that counts its open
// connections and its requests: /slow answers after slow, /upload answers
// the length and sha256 of the body it read (slowly, 64 KiB every 20 ms),
// /big sends r25DrainBigLen deterministic bytes, others their name.
type r25DrainBackend struct {
	name  string
	addr  string
	slow  time.Duration
	open  atomic.Int64
	hits  atomic.Int64
	slowN atomic.Int64
	srv   *http.Server
	done  chan struct{}
}

const r25DrainBigLen = 6 << 20

func r25DrainBigBody() []byte {
	b := make([]byte, r25DrainBigLen)
	for i := range b {
		b[i] = byte(i*13 + i>>9)
	}
	return b
}

func r25DrainStartBackend(t *testing.T, name string, slow time.Duration) *r25DrainBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := r25DrainBigBody()
	b := &r25DrainBackend{name: name, addr: ln.Addr().String(), slow: slow, done: make(chan struct{})}
	b.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		switch {
		case r.URL.Path == "/upload":
			h := sha256.New()
			buf := make([]byte, 64<<10)
			var n int64
			for {
				k, err := io.ReadFull(r.Body, buf)
				h.Write(buf[:k])
				n += int64(k)
				if err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		case r.URL.Path == "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			// Slowly, so that the reload comes while it streams.
			for off := 0; off < len(big); off += 256 << 10 {
				_, _ = w.Write(big[off:min(off+256<<10, len(big))])
				time.Sleep(15 * time.Millisecond)
			}
		case strings.HasPrefix(r.URL.Path, "/slow"):
			b.slowN.Add(1)
			time.Sleep(b.slow)
			io.WriteString(w, name)
		default:
			io.WriteString(w, name)
		}
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.open.Add(-1)
		}
	}}
	go func() { defer close(b.done); _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { b.srv.Close(); <-b.done })
	return b
}

func r25DrainYAML(extra string, bs ...*r25DrainBackend) string {
	var s strings.Builder
	s.WriteString("routes: [{pool: p}]\n" + extra + "pools:\n  p:\n    algorithm: round_robin\n    backends:\n")
	for _, b := range bs {
		fmt.Fprintf(&s, "      - {address: %s}\n", b.addr)
	}
	return s.String()
}

type r25DrainAnswer struct {
	code    int
	backend string
	body    []byte
	err     error
}

func r25DrainDo(c *http.Client, method, url string, body []byte) r25DrainAnswer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return r25DrainAnswer{err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return r25DrainAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return r25DrainAnswer{code: resp.StatusCode, backend: resp.Header.Get("X-Backend"), body: b, err: err}
}

// TestDrainRemovedBackendFinishesUploadAndDownload: a reload
// removes the backend while it is slowly reading a 2 MiB upload and
// slowly sending a 6 MiB answer; both complete intact through it, new
// requests go to the backend that replaced it, and once they are done the
// removed backend's connections are all closed.
func TestDrainRemovedBackendFinishesUploadAndDownload(t *testing.T) {
	a := r25DrainStartBackend(t, "a", 0)
	b := r25DrainStartBackend(t, "b", 0)
	px := startProxy(t, r25DrainYAML("timeouts: {response: 20s}\n", a))
	c := testClient(t)

	upload := bytes.Repeat([]byte("sluice-drain-25!"), 128<<10) // 2 MiB
	sum := sha256.Sum256(upload)
	wantUp := fmt.Sprintf("%d %s", len(upload), hex.EncodeToString(sum[:]))
	big := r25DrainBigBody()

	ups := make(chan r25DrainAnswer, 1)
	downs := make(chan r25DrainAnswer, 1)
	go func() { ups <- r25DrainDo(c, "POST", "http://"+px.addr+"/upload", upload) }()
	go func() { downs <- r25DrainDo(c, "GET", "http://"+px.addr+"/big", nil) }()
	r25DrainWait(t, "both requests at a", func() bool { return a.hits.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	apply(t, px, r25DrainYAML("timeouts: {response: 20s}\n", b))

	for range 10 {
		if r := r25DrainDo(c, "GET", "http://"+px.addr+"/x", nil); r.err != nil || r.code != 200 || r.backend != "b" {
			t.Errorf("new request after the reload = %d from %q (%v), want 200 from b", r.code, r.backend, r.err)
		}
	}
	up, down := <-ups, <-downs
	if up.err != nil || up.code != 200 || string(up.body) != wantUp || up.backend != "a" {
		t.Errorf("upload in flight on the removed backend = %d from %q %q (%v), want 200 from a %q", up.code, up.backend, up.body, up.err, wantUp)
	}
	if down.err != nil || down.code != 200 || !bytes.Equal(down.body, big) || down.backend != "a" {
		t.Errorf("download in flight on the removed backend = %d from %q, %d bytes intact %v (%v), want 200 from a, %d intact bytes",
			down.code, down.backend, len(down.body), bytes.Equal(down.body, big), down.err, len(big))
	}
	if got := a.hits.Load(); got != 2 {
		t.Errorf("removed backend got %d requests, want the 2 in flight", got)
	}
	r25DrainWait(t, "removed backend's connections closed", func() bool { return a.open.Load() == 0 })
}

// r25DrainWait polls cond for up to 5 s.
func r25DrainWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// r25DrainGoroutines counts the goroutines but fasthttp's idle
// server workers, which it keeps for a while (MaxIdleWorkerDuration) once
// used.
func r25DrainGoroutines() int {
	buf := make([]byte, 4<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\ngoroutine ") {
		if !strings.Contains(g, "fasthttp.(*workerPool)") {
			count++
		}
	}
	return count
}

// r25DrainFds counts this process's open descriptors.
func r25DrainFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// r25DrainGauge is the value of gauge name with the given label
// values (label=value pairs, all of which must match), and whether it
// exists.
func r25DrainGauge(t *testing.T, m *metrics.Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, mt := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range mt.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			return mt.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestDrainChurnLeavesNothingBehind: twelve reloads, each
// removing or re-adding a health-checked backend while slow requests run
// on it, answer every request with 200; once every drain is over, the
// pool is as at the start, no goroutine, descriptor or backend connection
// is left beyond those of the start, sluice_requests_in_flight is 0, no
// series says draining and only current backends have series.
func TestDrainChurnLeavesNothingBehind(t *testing.T) {
	bs := []*r25DrainBackend{
		r25DrainStartBackend(t, "a", 300*time.Millisecond),
		r25DrainStartBackend(t, "b", 300*time.Millisecond),
		r25DrainStartBackend(t, "c", 300*time.Millisecond),
	}
	extra := "drain_timeout: 5s\n"
	hc := "    health_check: {path: /hc, interval: 50ms, timeout: 1s}\n"
	yml := func(sel ...*r25DrainBackend) string {
		return strings.Replace(r25DrainYAML(extra, sel...), "    algorithm: round_robin\n", "    algorithm: round_robin\n"+hc, 1)
	}
	m := metrics.New("test")
	px := startProxyWith(t, yml(bs...), m)
	c := testClient(t)
	for range 30 {
		if r := r25DrainDo(c, "GET", "http://"+px.addr+"/warm", nil); r.code != 200 {
			t.Fatalf("warm-up = %d %v", r.code, r.err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	g0, f0 := r25DrainGoroutines(), r25DrainFds(t)
	var open0 int64
	for _, b := range bs {
		open0 += b.open.Load()
	}

	// The slow requests' client connections are closed once they are
	// done: they are not sluice's.
	slowTr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer slowTr.CloseIdleConnections()
	slowC := &http.Client{Transport: slowTr, Timeout: 10 * time.Second}
	var bad atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	shapes := [][]*r25DrainBackend{
		{bs[1], bs[2]}, {bs[0], bs[1], bs[2]}, {bs[0], bs[2]}, {bs[0]}, {bs[1]}, {bs[2], bs[0]},
		{bs[0], bs[1], bs[2]}, {bs[2]}, {bs[1], bs[0]}, {bs[0], bs[1], bs[2]}, {bs[1], bs[2]}, {bs[0], bs[1], bs[2]},
	}
	for _, shape := range shapes {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := r25DrainDo(slowC, "GET", "http://"+px.addr+"/slow", nil); r.err != nil || r.code != 200 {
					bad.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%d %v", r.code, r.err))
					mu.Unlock()
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		apply(t, px, yml(shape...))
	}
	wg.Wait()
	slowTr.CloseIdleConnections()
	if bad.Load() != 0 {
		t.Errorf("%d slow requests failed across reloads: %v", bad.Load(), errs)
	}
	r25DrainWait(t, "every drain over", func() bool {
		for _, b := range bs {
			if len(leavingOf(t, px, b.addr)) != 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // a tick for the last drains' series
	if v, _ := r25DrainGauge(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("sluice_requests_in_flight = %v after every request ended, want 0", v)
	}
	for _, b := range bs {
		if v, ok := r25DrainGauge(t, m, "sluice_backend_state", "backend", b.addr, "state", "draining"); !ok || v != 0 {
			t.Errorf("sluice_backend_state{backend=%s,state=draining} = %v (exists %v), want 0", b.name, v, ok)
		}
		if v, ok := r25DrainGauge(t, m, "sluice_backend_up", "backend", b.addr); !ok || v != 1 {
			t.Errorf("sluice_backend_up{backend=%s} = %v (exists %v), want 1", b.name, v, ok)
		}
	}
	// Connections: the backends' (keep-alive ones to sluice, at most as
	// many as at the start plus the slow requests' own, which the idle
	// sweep closes after timeouts.upstream_idle); goroutines and fds
	// back to the start's, give or take the test client's and the
	// probes' connections.
	deadline := time.Now().Add(6 * time.Second)
	var g, f int
	var open int64
	for {
		runtime.GC()
		g, f = r25DrainGoroutines(), r25DrainFds(t)
		open = 0
		for _, b := range bs {
			open += b.open.Load()
		}
		if g <= g0+8 && f <= f0+8 && open <= open0+3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g > g0+8 || f > f0+8 || open > open0+3 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("after the drains: %d goroutines (start %d), %d fds (start %d), %d backend connections (start %d)\n%s",
			g, g0, f, f0, open, open0, buf[:n])
	}
}

// TestDrainAdminDrainInFlightAndGauges: a backend drained through
// the admin API (SetDrain) takes no new request, finishes its slow one,
// has no connection left open a little after it (README: within a
// second), and says draining 1 and up 0 meanwhile; undrained it takes
// requests again and says healthy.
func TestDrainAdminDrainInFlightAndGauges(t *testing.T) {
	a := r25DrainStartBackend(t, "a", 800*time.Millisecond)
	b := r25DrainStartBackend(t, "b", 800*time.Millisecond)
	m := metrics.New("test")
	px := startProxyWith(t, r25DrainYAML("", a, b), m)
	c := testClient(t)
	for range 10 {
		r25DrainDo(c, "GET", "http://"+px.addr+"/warm", nil)
	}
	// One slow request on each.
	slow := make(chan r25DrainAnswer, 2)
	for range 2 {
		go func() { slow <- r25DrainDo(c, "GET", "http://"+px.addr+"/slow", nil) }()
	}
	r25DrainWait(t, "slow requests at both", func() bool { return a.slowN.Load() == 1 && b.slowN.Load() == 1 })
	if err := px.ctrl.SetDrain(context.Background(), "p", a.addr, true); err != nil {
		t.Fatal(err)
	}
	hitsA := a.hits.Load()
	for range 10 {
		if r := r25DrainDo(c, "GET", "http://"+px.addr+"/x", nil); r.code != 200 || r.backend != "b" {
			t.Errorf("request after the drain = %d from %q (%v), want 200 from b", r.code, r.backend, r.err)
		}
	}
	if v, _ := r25DrainGauge(t, m, "sluice_backend_state", "backend", a.addr, "state", "draining"); v != 1 {
		t.Errorf("drained backend's state{draining} = %v, want 1", v)
	}
	if v, _ := r25DrainGauge(t, m, "sluice_backend_up", "backend", a.addr); v != 0 {
		t.Errorf("drained backend's up = %v, want 0", v)
	}
	for range 2 {
		if r := <-slow; r.err != nil || r.code != 200 {
			t.Errorf("slow request in flight at the drain = %d %v, want 200", r.code, r.err)
		}
	}
	if got := a.hits.Load(); got != hitsA {
		t.Errorf("drained backend got %d new requests", got-hitsA)
	}
	r25DrainWait(t, "drained backend's connections closed", func() bool { return a.open.Load() == 0 })
	r25DrainWait(t, "sluice_upstream_connections of the drained backend at 0", func() bool {
		v, _ := r25DrainGauge(t, m, "sluice_upstream_connections", "backend", a.addr)
		return v == 0
	})
	if err := px.ctrl.SetDrain(context.Background(), "p", a.addr, false); err != nil {
		t.Fatal(err)
	}
	seenA := false
	for range 10 {
		if r := r25DrainDo(c, "GET", "http://"+px.addr+"/x", nil); r.backend == "a" {
			seenA = true
		}
	}
	if !seenA {
		t.Error("undrained backend took no request of 10")
	}
	if v, _ := r25DrainGauge(t, m, "sluice_backend_state", "backend", a.addr, "state", "healthy"); v != 1 {
		t.Errorf("undrained backend's state{healthy} = %v, want 1", v)
	}
	if v, _ := r25DrainGauge(t, m, "sluice_backend_state", "backend", a.addr, "state", "draining"); v != 0 {
		t.Errorf("undrained backend's state{draining} = %v, want 0", v)
	}
}
