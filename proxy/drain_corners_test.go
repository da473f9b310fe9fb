package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func dreviewYAML(a, b string, wa, wb int, extra string) string {
	return fmt.Sprintf(`%sroutes: [{pool: web}]
pools:
  web:
    algorithm: round_robin
    backends: [{address: %s, weight: %d}, {address: %s, weight: %d}]
`, extra, a, wa, b, wb)
}

// TestDrainCornerDrainKeptAcrossReloads: an admin drain takes the backend out
// of rotation, lets its in-flight request finish, and survives a reload
// of the same file, one that changes upstream settings (new client) and
// one that changes its weight in the file.
func TestDrainCornerDrainKeptAcrossReloads(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		w.Write([]byte("a"))
	})
	other := startBackend(t, "b", nil)
	yml := dreviewYAML(slow.addr(), other.addr(), 1, 1, "")
	px := startProxy(t, yml)
	c := testClient(t)
	// Put a slow request on a.
	res := make(chan string, 1)
	go func() {
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequest("GET", "http://"+px.addr+"/slow", nil)
			resp, err := c.Do(req)
			if err != nil {
				res <- "error " + err.Error()
				return
			}
			be := resp.Header.Get("X-Backend")
			resp.Body.Close()
			if be == "a" {
				res <- "a"
				return
			}
		}
		res <- "never a"
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never reached a")
	}
	if err := px.ctrl.SetDrain(context.Background(), "web", slow.addr(), true); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, px, slow.addr()); st.State != StateDraining || st.InFlight != 1 || st.EffectiveWeight != 0 {
		t.Errorf("during drain: %+v, want draining, in_flight 1, effective 0", st)
	}
	check := func(when string) {
		t.Helper()
		before := slow.hits.Load()
		for i := 0; i < 10; i++ {
			if code, be, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 || be != "b" {
				t.Errorf("%s: request %d got %d from %q, want 200 from b", when, i, code, be)
			}
		}
		if n := slow.hits.Load() - before; n != 0 {
			t.Errorf("%s: drained backend got %d new requests", when, n)
		}
		if st := stateOf(t, px, slow.addr()); !st.AdminDrained {
			t.Errorf("%s: drain lost: %+v", when, st)
		}
	}
	check("after drain")
	apply(t, px, yml)
	check("after identical reload")
	apply(t, px, dreviewYAML(slow.addr(), other.addr(), 1, 1, "timeouts: {response: 20s}\n"))
	check("after settings reload")
	apply(t, px, dreviewYAML(slow.addr(), other.addr(), 3, 1, "timeouts: {response: 20s}\n"))
	check("after weight reload")
	close(release)
	if got := <-res; got != "a" {
		t.Errorf("in-flight request on drained backend: %s, want it finished by a", got)
	}
	if err := px.ctrl.SetDrain(context.Background(), "web", slow.addr(), false); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, px, slow.addr()); st.State != StateHealthy || st.AdminDrained {
		t.Errorf("after undrain: %+v", st)
	}
}

// TestDrainCornerDrainErrorsAndIdempotence: unknown pool or backend is
// ErrNotFound; drain twice and undrain twice are no-ops that succeed.
func TestDrainCornerDrainErrorsAndIdempotence(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	px := startProxy(t, dreviewYAML(a.addr(), b.addr(), 1, 1, ""))
	ctx := context.Background()
	if err := px.ctrl.SetDrain(ctx, "web", "127.0.0.1:1", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("drain of unknown backend: %v", err)
	}
	if err := px.ctrl.SetDrain(ctx, "nope", a.addr(), true); !errors.Is(err, ErrNotFound) {
		t.Errorf("drain in unknown pool: %v", err)
	}
	if err := px.ctrl.SetWeight(ctx, "web", "127.0.0.1:1", 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("weight of unknown backend: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := px.ctrl.SetDrain(ctx, "web", a.addr(), true); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := px.ctrl.SetDrain(ctx, "web", a.addr(), false); err != nil {
			t.Fatal(err)
		}
	}
	if st := stateOf(t, px, a.addr()); st.State != StateHealthy {
		t.Errorf("after drain, drain, undrain, undrain: %+v", st)
	}
	// Draining both: no backend takes requests; the proxy answers an error.
	_ = px.ctrl.SetDrain(ctx, "web", a.addr(), true)
	_ = px.ctrl.SetDrain(ctx, "web", b.addr(), true)
	code, _, _ := get(t, testClient(t), "http://"+px.addr+"/", nil)
	if code != 503 && code != 502 {
		t.Errorf("all drained: %d", code)
	}
	if n := a.hits.Load() + b.hits.Load(); n != 0 {
		t.Errorf("drained backends got %d requests", n)
	}
}

// TestDrainCornerAdminWeightAndReload: an admin weight survives a reload that
// leaves the file's weight alone and is replaced by one that changes it.
func TestDrainCornerAdminWeightAndReload(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	yml := dreviewYAML(a.addr(), b.addr(), 1, 1, "")
	px := startProxy(t, yml)
	ctx := context.Background()
	if err := px.ctrl.SetWeight(ctx, "web", a.addr(), 0); err != nil {
		t.Fatal(err)
	}
	apply(t, px, yml)
	if st := stateOf(t, px, a.addr()); st.AdminWeight == nil || *st.AdminWeight != 0 || st.EffectiveWeight != 0 {
		t.Errorf("after identical reload: %+v, want admin weight 0 kept", st)
	}
	c := testClient(t)
	for i := 0; i < 6; i++ {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if a.hits.Load() != 0 {
		t.Errorf("weight-0 backend got %d", a.hits.Load())
	}
	apply(t, px, dreviewYAML(a.addr(), b.addr(), 2, 1, ""))
	if st := stateOf(t, px, a.addr()); st.AdminWeight != nil || st.Weight != 2 {
		t.Errorf("after the file changed its weight: %+v, want admin weight gone", st)
	}
}

// TestDrainCornerDrainTimeoutInFlight: a removed backend whose request runs
// past drain_timeout: the request is not cut, the client gets the whole
// answer, and the backend is listed as leaving until that request ends,
// as its draining series say (it vanished from /admin/pools at
// drain_timeout before session 25, found by review).
func TestDrainCornerDrainTimeoutInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	a := startBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		w.Write([]byte("done-a"))
	})
	b := startBackend(t, "b", nil)
	extra := "drain_timeout: 300ms\n"
	px := startProxy(t, fmt.Sprintf("%sroutes: [{pool: web}]\npools:\n  web:\n    backends: [{address: %s}]\n", extra, a.addr()))
	c := testClient(t)
	type r struct {
		code int
		body string
	}
	res := make(chan r, 1)
	go func() {
		code, _, body := get(t, c, "http://"+px.addr+"/slow", nil)
		res <- r{code, body}
	}()
	<-started
	apply(t, px, fmt.Sprintf("%sroutes: [{pool: web}]\npools:\n  web:\n    backends: [{address: %s}]\n", extra, b.addr()))
	time.Sleep(900 * time.Millisecond) // three drain_timeouts
	if l := leavingOf(t, px, a.addr()); len(l) != 1 || l[0].InFlight != 1 || l[0].State != StateDraining {
		t.Errorf("past drain_timeout with a request in flight, leaving rows: %+v, want one draining with in_flight 1", l)
	}
	close(release)
	waitFor(t, "a freed", 3*time.Second, func() bool { return len(leavingOf(t, px, a.addr())) == 0 })
	got := <-res
	if got.code != 200 || got.body != "done-a" {
		t.Errorf("request in flight past drain_timeout: %d %q, want 200 done-a", got.code, got.body)
	}
}

// TestDrainCornerConcurrentAdminAndReloads races admin calls, status and
// reloads (run with -race).
func TestDrainCornerConcurrentAdminAndReloads(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	px := startProxy(t, dreviewYAML(a.addr(), b.addr(), 1, 1, ""))
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				switch g {
				case 0:
					_ = px.ctrl.SetDrain(ctx, "web", a.addr(), i%2 == 0)
				case 1:
					_ = px.ctrl.SetWeight(ctx, "web", b.addr(), uint32(i%3))
				case 2:
					_, _ = px.ctrl.Status(ctx)
				case 3:
					cfgText := dreviewYAML(a.addr(), b.addr(), 1+i%2, 1, "")
					_ = applyErr(px, cfgText)
				}
			}
		}(g)
	}
	wg.Wait()
}
