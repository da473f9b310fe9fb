package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// r23Log is a zerolog sink safe for concurrent writes.
type r23Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *r23Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count counts lines holding every one of parts.
func (l *r23Log) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.buf.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// r23Backend answers probes (any path but /) with healthCode, traffic (/)
// with 200, counting each.
type r23Backend struct {
	*testBackend
	healthCode atomic.Int32
	probes     atomic.Int64
	traffic    atomic.Int64
}

func r23NewBackend(t *testing.T, name string) *r23Backend {
	b := &r23Backend{}
	b.healthCode.Store(200)
	b.testBackend = startBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			b.probes.Add(1)
			w.WriteHeader(int(b.healthCode.Load()))
			return
		}
		b.traffic.Add(1)
	})
	return b
}

// TestWeightZeroAndDrainedStillProbed: a backend of weight 0 and
// one drained through the admin API are still members, so they are still
// probed and their health tracked (a sticky pool's weight-0 backend keeps
// sessions only while healthy, README "Algorithms"); one that failed its
// checks while at weight 0 gets no traffic once its weight is back, until
// its checks pass again. Passes.
func TestWeightZeroAndDrainedStillProbed(t *testing.T) {
	a, z, d := r23NewBackend(t, "a"), r23NewBackend(t, "z"), r23NewBackend(t, "d")
	yml := func(zw int) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s, weight: %d }, { address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2 }
`, a.addr(), z.addr(), zw, d.addr())
	}
	px := startProxy(t, yml(0))
	if err := px.ctrl.SetDrain(context.Background(), "p", d.addr(), true); err != nil {
		t.Fatal(err)
	}
	z.healthCode.Store(503)
	d.healthCode.Store(503)
	waitFor(t, "weight-0 and drained backends unhealthy", 3*time.Second, func() bool {
		return !stateOf(t, px, z.addr()).Healthy && !stateOf(t, px, d.addr()).Healthy
	})
	if r := stateOf(t, px, z.addr()).HealthReason; r != "status 503" {
		t.Errorf("weight-0 backend's health_reason %q, want status 503", r)
	}
	// Weight back: no traffic while its checks still fail.
	apply(t, px, yml(1))
	c := testClient(t)
	for range 20 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if n := z.traffic.Load(); n != 0 {
		t.Errorf("unhealthy backend whose weight came back got %d requests", n)
	}
	z.healthCode.Store(200)
	waitFor(t, "z healthy", 3*time.Second, func() bool { return stateOf(t, px, z.addr()).Healthy })
	for range 20 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if z.traffic.Load() == 0 {
		t.Errorf("z healthy again but got no traffic")
	}
}

// TestCheckReloadKeepsStateAndLogsOnce: at the control plane, a
// reload that changes a pool's check (interval, timeout, thresholds) keeps an
// unhealthy backend unhealthy, out of traffic, with no healthy flicker,
// and the one that changes the path to a passing one brings it back after
// healthy_threshold probes. Each transition is logged once (README
// "Each transition is logged once ... backend unhealthy / backend healthy,
// with source: active and pool, backend, reason"). Passes.
func TestCheckReloadKeepsStateAndLogsOnce(t *testing.T) {
	a := r23NewBackend(t, "a")
	var bProbes, bTraffic atomic.Int64
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			bTraffic.Add(1)
		case "/ok":
			bProbes.Add(1)
		default:
			bProbes.Add(1)
			w.WriteHeader(503)
		}
	})
	yml := func(check string) string {
		return fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
    health_check: %s
`, a.addr(), b.addr(), check)
	}
	var lg r23Log
	px := startProxyLogged(t, yml(`{ path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 3, unhealthy_threshold: 2 }`),
		nil, nil, zerolog.New(&lg))
	waitFor(t, "b unhealthy", 3*time.Second, func() bool { return !stateOf(t, px, b.addr()).Healthy })
	for i, check := range []string{
		`{ path: /healthz, interval: 60ms, timeout: 500ms, healthy_threshold: 3, unhealthy_threshold: 2 }`,
		`{ path: /healthz, interval: 60ms, timeout: 400ms, healthy_threshold: 1, unhealthy_threshold: 5 }`,
	} {
		apply(t, px, yml(check))
		n := bProbes.Load()
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if st := stateOf(t, px, b.addr()); st.Healthy {
				t.Fatalf("reload %d: failing backend healthy again after a check change", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if bProbes.Load() < n+2 {
			t.Fatalf("reload %d: %d probes in 300ms", i, bProbes.Load()-n)
		}
	}
	c := testClient(t)
	for range 10 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if n := bTraffic.Load(); n != 0 {
		t.Errorf("unhealthy backend got %d requests after check reloads", n)
	}
	apply(t, px, yml(`{ path: /ok, interval: 50ms, timeout: 500ms, healthy_threshold: 3, unhealthy_threshold: 2 }`))
	n := bProbes.Load()
	waitFor(t, "b healthy on /ok", 3*time.Second, func() bool { return stateOf(t, px, b.addr()).Healthy })
	if got := bProbes.Load() - n; got < 3 {
		t.Errorf("healthy after %d passing probes, want healthy_threshold 3", got)
	}
	time.Sleep(200 * time.Millisecond)
	if got := lg.count(`"message":"backend unhealthy"`, `"backend":"`+b.addr()+`"`, `"pool":"p"`, `"source":"active"`, `"reason":"status 503"`); got != 1 {
		t.Errorf("%d 'backend unhealthy' lines for b, want 1:\n%s", got, lg.buf.String())
	}
	if got := lg.count(`"message":"backend healthy"`, `"backend":"`+b.addr()+`"`, `"source":"active"`); got != 1 {
		t.Errorf("%d 'backend healthy' lines for b, want 1", got)
	}
	if got := lg.count(`"backend":"`+a.addr()+`"`, `healthy"`); got != 0 {
		t.Errorf("%d health lines for the always-healthy a", got)
	}
}

// TestNewBackendFirstProbeFailsAtOnce: a backend added by a reload
// to a checked pool starts healthy and leaves on its first failed probe,
// however high unhealthy_threshold is (README: "their first probe failing
// takes them out immediately"). A TCP check passes a backend that answers
// HTTP with 503 (connect only). Passes.
func TestNewBackendFirstProbeFailsAtOnce(t *testing.T) {
	a := r23NewBackend(t, "a")
	dead := r23NewBackend(t, "dead")
	dead.healthCode.Store(500)
	tcpOnly := r23NewBackend(t, "tcp")
	tcpOnly.healthCode.Store(503)
	yml := func(extra string) string {
		return fmt.Sprintf(`routes: [{ pool: p }, { pool: q, match: { path_prefix: /q } }]
pools:
  p:
    backends: [{ address: %s }%s]
    health_check: { path: /healthz, interval: 1s, timeout: 500ms, unhealthy_threshold: 10 }
  q:
    backends: [{ address: %s }]
    health_check: { type: tcp, path: /healthz, interval: 50ms, timeout: 500ms, unhealthy_threshold: 1 }
`, a.addr(), extra, tcpOnly.addr())
	}
	px := startProxy(t, yml(""))
	apply(t, px, yml(", { address: "+dead.addr()+" }"))
	d := waitFor(t, "new dead backend out", 2*time.Second, func() bool { return !stateOf(t, px, dead.addr()).Healthy })
	// First probe within interval/10 of the start (100ms), well before a
	// second one a 1s interval later.
	if d > 500*time.Millisecond {
		t.Errorf("new failing backend out after %v, want its first probe (<= ~100ms)", d)
	}
	if n := dead.probes.Load(); n != 1 {
		t.Errorf("out after %d probes, want 1", n)
	}
	time.Sleep(200 * time.Millisecond)
	if st := stateOf(t, px, tcpOnly.addr()); !st.Healthy {
		t.Errorf("tcp-checked backend unhealthy (%q): a tcp check only connects", st.HealthReason)
	}
	if n := tcpOnly.probes.Load(); n != 0 {
		t.Errorf("tcp check sent %d HTTP requests", n)
	}
}

// TestStickyWeightZeroLosesSessionsWhenUnhealthy: README
// (Algorithms, sticky): "A backend of weight 0 or drained through the
// admin API keeps its existing sessions; an unhealthy ... one loses them
// (they get a new cookie)". The weight-0 and the drained backend are
// still probed, so their checks failing takes their sessions away, and
// passing again gives them back. Passes.
func TestStickyWeightZeroLosesSessionsWhenUnhealthy(t *testing.T) {
	a, z := r23NewBackend(t, "a"), r23NewBackend(t, "z")
	px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    algorithm: sticky
    backends: [{ address: %s }, { address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }
`, a.addr(), z.addr()))
	c := testClient(t)
	// Find z's cookie.
	var cookie string
	for i := 0; i < 50 && cookie == ""; i++ {
		resp, err := c.Get("http://" + px.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Backend") == "z" {
			for _, ck := range resp.Cookies() {
				if ck.Name == "sluice_affinity" {
					cookie = ck.Name + "=" + ck.Value
				}
			}
		}
	}
	if cookie == "" {
		t.Fatal("no sticky cookie for z")
	}
	via := func() string {
		_, b, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"Cookie": cookie})
		return b
	}
	for _, how := range []string{"weight 0", "drained"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			if how == "weight 0" {
				if err := px.ctrl.SetWeight(ctx, "p", z.addr(), 0); err != nil {
					t.Fatal(err)
				}
				defer px.ctrl.SetWeight(ctx, "p", z.addr(), 1)
			} else {
				if err := px.ctrl.SetDrain(ctx, "p", z.addr(), true); err != nil {
					t.Fatal(err)
				}
				defer px.ctrl.SetDrain(ctx, "p", z.addr(), false)
			}
			if b := via(); b != "z" {
				t.Fatalf("z's session went to %q while z is %s and healthy", b, how)
			}
			z.healthCode.Store(503)
			waitFor(t, "z unhealthy", 2*time.Second, func() bool { return !stateOf(t, px, z.addr()).Healthy })
			for range 5 {
				if b := via(); b != "a" {
					t.Fatalf("z's session went to %q while z is %s and unhealthy", b, how)
				}
			}
			z.healthCode.Store(200)
			waitFor(t, "z healthy", 2*time.Second, func() bool { return stateOf(t, px, z.addr()).Healthy })
			if b := via(); b != "z" {
				t.Fatalf("z's session went to %q once z was healthy again", b)
			}
		})
	}
}
