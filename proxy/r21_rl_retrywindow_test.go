package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a GET whose attempt fails (here a reset, retryable for GET) while
// a reload that changes timeouts or limits is being applied gets 502,
// although the pool has a healthy backend it has not tried. README
// (Retries): "A connection that broke after the request was sent is
// retried only for idempotent methods (GET ...)", and "After a reload
// that came while the request was in flight, a retry goes by the new
// config: through the backend's new client". Actual: reconcile
// (control.go, the `m.settings != settings` branch) closes every old
// client (c.drain -> client.Close) and only publishes the snapshot with
// the new clients after rebuilding every pool; a retry in between
// (retryTarget -> usable, handler.go) finds the current snapshot's
// targets all with closed clients, takes none, and the failed attempt's
// 502 stands. The reload storm (TestReloadStorm) hit it a few
// times per 10,000 GETs; here a pool with a large maglev table (1M slots) widens
// the window so a held request's reset lands in it every time.
func TestRetryDuringSettingsReload(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
	})
	bad := startBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		<-hold
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close() // a reset before any answer
			}
		}
	})
	good := startBackend(t, "good", nil)
	z := startBackend(t, "z", nil)
	yml := func(response string, zWeight int) string {
		return fmt.Sprintf(`routes:
  - { match: { path_prefix: /big/ }, pool: big }
  - pool: main
pools:
  main:
    algorithm: round_robin
    backends: [{ address: %s }, { address: %s }]
  big:
    algorithm: maglev
    hash_key: path
    maglev_table_size: 1000003
    backends: [{ address: %s, weight: %d }, { address: %s }]
retries: { attempts: 2 }
drain_timeout: 10s
timeouts: { response: %s }
`, bad.addr(), good.addr(), z.addr(), zWeight, good.addr(), response)
	}
	px := startProxy(t, yml("5s", 1))

	// A GET held by bad (round robin: at most one goes to good first).
	type answer struct {
		code     int
		by, body string
	}
	answers := make(chan answer, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		for {
			resp, err := c.Get("http://" + px.addr + "/x")
			if err != nil {
				answers <- answer{body: err.Error()}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Backend") == "good" && bad.hits.Load() == 0 {
				continue
			}
			answers <- answer{resp.StatusCode, resp.Header.Get("X-Backend"), strings.TrimSpace(string(body))}
			return
		}
	}()
	waitFor(t, "a GET held by bad", 5*time.Second, func() bool { return bad.hits.Load() == 1 })

	// A reload that changes timeouts.response (new clients for every
	// backend) and a weight of big (its 5M-slot table rebuilt).
	applied := make(chan error, 1)
	go func() { applied <- px.ctrl.Apply(context.Background(), mustParse(t, yml("6s", 2))) }()
	// Release bad once the old clients are closed and the new snapshot is
	// not yet published (good's client in the current snapshot is
	// closed), or 20 ms into the reload (the window, if a fix closes
	// them later), or once it is applied: with a fix the GET gets 200
	// whichever comes first.
	goodClosed := func() bool {
		for _, up := range px.proxy.Current().pools["main"].targets {
			if up.backend.Addr == good.addr() && up.client.closed.Load() {
				return true
			}
		}
		return false
	}
	inWindow := false
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
		if inWindow = goodClosed(); inWindow {
			break
		}
		if len(applied) > 0 {
			break
		}
	}
	close(hold) // bad resets the GET now, while the reload is being built
	var got answer
	select {
	case got = <-answers:
	case <-time.After(15 * time.Second):
		t.Fatal("the GET got no answer in 15s")
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if got.code != 200 || got.by != "good" {
		t.Errorf("GET reset by bad during a settings reload = %d from %q (%q), want 200 from good (retried: GET, a backend left untried); reset while every client in the current snapshot was closed: %v",
			got.code, got.by, got.body, inWindow)
	}
}
