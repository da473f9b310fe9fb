package admin

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
	"sluice/proxy"
)

// adminWithConfig serves the admin API over a real controller running yml.
func adminWithConfig(t *testing.T, yml string) (string, *proxy.Controller) {
	t.Helper()
	cfg, err := config.Parse("admin.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctrl := proxy.NewController(proxy.New(), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	base := serve(t, Handler(Options{
		Controller: ctrl,
		Ready:      func() bool { return true },
		Config:     func() ConfigInfo { return ConfigInfo{Config: cfg, Generation: 1, LoadedAt: time.Now()} },
	}))
	return base, ctrl
}

// TestPoolsEmptyBackendsIsList: GET /admin/pools lists
// "every pool ... and backend" (README, Runtime admin API). A pool with no
// backend at the moment -- a DNS pool whose name has no address yet, or
// whose lookups failed from the start -- must still have a list of
// backends, an empty one, as the top-level "pools" is [] when there is
// no pool.
func TestPoolsEmptyBackendsIsList(t *testing.T) {
	base, _ := adminWithConfig(t, "routes: [{pool: web}]\npools:\n  web:\n    discovery: {dns: {name: svc.invalid, port: 80, type: A, interval: 10s}}\n")
	code, body := call(t, "GET", base+"/admin/pools", "")
	if code != 200 {
		t.Fatalf("GET /admin/pools = %d %s", code, body)
	}
	var got struct {
		Pools []map[string]json.RawMessage `json:"pools"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Pools) != 1 {
		t.Fatalf("GET /admin/pools: %v, %s", err, body)
	}
	if b := string(got.Pools[0]["backends"]); b != "[]" {
		// It was null: a client walking .pools[].backends[] (jq,
		// JavaScript's for...of, a typed decoder that rejects null)
		// failed on it (found by review).
		t.Errorf(`pool "web" with no backend: "backends": %s, want []`, b)
	}
}
