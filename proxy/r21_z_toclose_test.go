package proxy

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"sluice/config"
)

// Found by review. What was wrong: since b2fd31f, a settings reload publishes the snapshot with the
// backend's new client first and only then closes the replaced client's
// idle connections (Controller.publish's deferred loop, control.go:751).
// The two clients share the backend's open-connection count (upClient.open),
// so a request that takes the new snapshot in between finds the count at
// max_conns_per_backend (the old client's idle connection) and gets
// 503 "upstream connection limit reached" with no request in flight
// anywhere: ~25-45 of ~10,000 sequential requests here; none at ca1dfe4,
// where drain closed them before the publish. README (limits): a replaced
// client's "idle ones close at once"; the earlier review's bug, "a reload's
// new client got 503s beside the old one's idle connections", is back in
// that window.
//
// One client sends one request at a time to a pool of one backend with
// max_conns_per_backend: 1 while reloads give the backend a new client
// (another timeouts.response) back to back. Only one request is ever in
// flight, so every one is due a 200.
func TestReplacedIdleConnDuringPublish(t *testing.T) {
	be := startBackend(t, "b", nil)
	yml := func(resp string) string {
		return fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\n"+
			"limits: { max_conns_per_backend: 1 }\ndrain_timeout: 10s\ntimeouts: { response: %s, upstream_idle: 30s }\n", be.addr(), resp)
	}
	px := startProxy(t, yml("5s"))
	var cfgs [2]*config.Config
	for i, r := range []string{"6s", "7s"} {
		cfg, err := config.Parse("t.yaml", []byte(yml(r)))
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = cfg
	}
	stop := make(chan struct{})
	reloads := make(chan int)
	go func() {
		n := 0
		defer func() { reloads <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := px.ctrl.Apply(context.Background(), cfgs[n%2]); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	c := testClient(t)
	var ok, bad atomic.Int64
	var first string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get("http://" + px.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ok.Add(1)
		} else {
			if bad.Add(1) == 1 {
				first = fmt.Sprintf("%d %q", resp.StatusCode, b)
			}
		}
	}
	close(stop)
	n := <-reloads
	t.Logf("%d reloads, %d requests answered 200", n, ok.Load())
	if bad.Load() > 0 {
		t.Errorf("%d of %d sequential requests not 200 (first: %s), want none", bad.Load(), bad.Load()+ok.Load(), first)
	}
}
