package proxy

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"sluice/config"
)

// TestChurnLongInFlight: slow requests (1.2 s each) run on two
// backends while one of them is removed, re-added at once, removed again,
// its upstream settings changed and drained through the admin API, with a
// drain_timeout (300 ms) shorter than the requests. Every slow request
// must finish with its backend's answer; afterwards no connection from
// sluice stays open at the removed backend.
func TestChurnLongInFlight(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1200 * time.Millisecond)
		_, _ = io.WriteString(w, "slow done "+r.URL.Path)
	}
	a, _ := startChurnBackend(t, "a", h)
	x, xOpen := startChurnBackend(t, "x", h)
	yml := func(withX bool, response string) string {
		s := fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: %s }\n", a.addr())
		if withX {
			s += fmt.Sprintf("      - { address: %s }\n", x.addr())
		}
		return s + "drain_timeout: 300ms\ntimeouts: { response: " + response + ", upstream_idle: 30s }\n"
	}
	px := startProxy(t, yml(true, "5s"))

	type result struct {
		code     int
		body, by string
		err      error
	}
	results := make(chan result, 4096)
	var wg sync.WaitGroup
	send := func(i int) {
		defer wg.Done()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 0}}
		resp, err := c.Get(fmt.Sprintf("http://%s/r%d", px.addr, i))
		if err != nil {
			results <- result{err: err}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- result{code: resp.StatusCode, body: string(body), by: resp.Header.Get("X-Backend")}
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	parse := func(s string) *config.Config {
		cfg, err := config.Parse("t.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	n := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for range 2 {
			wg.Add(1)
			go send(n)
			n++
		}
		time.Sleep(30 * time.Millisecond)
		switch rnd.IntN(5) {
		case 0: // removed, re-added at once
			_ = px.ctrl.Apply(context.Background(), parse(yml(false, "5s")))
			_ = px.ctrl.Apply(context.Background(), parse(yml(true, "5s")))
		case 1:
			_ = px.ctrl.Apply(context.Background(), parse(yml(false, "5s")))
		case 2: // new upstream settings: new clients
			_ = px.ctrl.Apply(context.Background(), parse(yml(true, []string{"5s", "6s"}[rnd.IntN(2)])))
		case 3:
			_ = px.ctrl.SetDrain(context.Background(), "p", x.addr(), true)
		case 4:
			_ = px.ctrl.SetDrain(context.Background(), "p", x.addr(), false)
		}
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil || r.code != 200 || len(r.body) < 10 || r.body[:10] != "slow done " {
			t.Errorf("slow request: %d %q from %q, %v; want 200 with the backend's answer", r.code, r.body, r.by, r.err)
		}
	}
	t.Logf("%d slow requests", n)

	apply(t, px, yml(false, "5s"))
	waitFor(t, "x freed", 5*time.Second, func() bool { return len(leavingOf(t, px, x.addr())) == 0 })
	waitFor(t, "x's connections closed", 2*time.Second, func() bool { return xOpen.n.Load() == 0 })
}
