package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"sluice/config"
	"sluice/proxy"
)

func startAdmin(t *testing.T) (string, *proxy.Controller) {
	t.Helper()
	yml := "routes: [{pool: web}]\npools:\n  web:\n    algorithm: round_robin\n    backends: [{address: 127.0.0.1:9001}, {address: 127.0.0.1:9002, weight: 2}]\n"
	cfg, err := config.Parse("admin.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctrl := proxy.NewController(proxy.New(), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	if err := ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	reloads := 0
	h := Handler(Options{
		Controller: ctrl,
		Ready:      func() bool { return true },
		Reload: func(context.Context) error {
			reloads++
			if reloads > 1 {
				return fmt.Errorf("admin.yaml:3: pools: broken")
			}
			return nil
		},
		Config: func() ConfigInfo { return ConfigInfo{Config: cfg, Generation: 7, LoadedAt: time.Unix(0, 0)} },
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); cancel(); <-done })
	return "http://" + ln.Addr().String(), ctrl
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	base, _ := startAdmin(t)
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 string
	}{
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"readyz", "GET", "/readyz", "", 200, "ready"},
		{"pools", "GET", "/admin/pools", "", 200, `"address": "127.0.0.1:9002"`},
		{"config json", "GET", "/admin/config", "", 200, `"generation": 7`},
		{"config yaml", "GET", "/admin/config?format=yaml", "", 200, "algorithm: round_robin"},
		{"drain", "POST", "/admin/pools/web/backends/127.0.0.1:9001/drain", "", 200, `"operation": "drain"`},
		{"weight json", "PUT", "/admin/pools/web/backends/127.0.0.1:9002/weight", `{"weight": 5}`, 200, `"result": "ok"`},
		{"weight number", "PUT", "/admin/pools/web/backends/127.0.0.1:9002/weight", `3`, 200, `"result": "ok"`},
		{"bad weight", "PUT", "/admin/pools/web/backends/127.0.0.1:9002/weight", `{"weight": -1}`, 400, "weight must be from 0"},
		{"garbage weight", "PUT", "/admin/pools/web/backends/127.0.0.1:9002/weight", `heavy`, 400, "want a body"},
		{"unknown pool", "POST", "/admin/pools/nope/backends/127.0.0.1:9001/drain", "", 404, `pool \"nope\": not found`},
		{"unknown backend", "POST", "/admin/pools/web/backends/127.0.0.1:1/drain", "", 404, "not found"},
		{"unknown op", "POST", "/admin/pools/web/backends/127.0.0.1:9001/explode", "", 404, "unknown operation"},
		{"wrong method", "GET", "/admin/pools/web/backends/127.0.0.1:9001/drain", "", 405, "not allowed"},
		{"reload ok", "POST", "/admin/reload", "", 200, "reloaded"},
		{"reload rejected", "POST", "/admin/reload", "", 400, "admin.yaml:3: pools: broken"},
		{"no such endpoint", "GET", "/nope", "", 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, base+tt.path, tt.body)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestAdminPoolsReflectRuntimeChanges(t *testing.T) {
	base, _ := startAdmin(t)
	call(t, "POST", base+"/admin/pools/web/backends/127.0.0.1:9001/drain", "")
	call(t, "PUT", base+"/admin/pools/web/backends/127.0.0.1:9002/weight", "7")
	_, body := call(t, "GET", base+"/admin/pools", "")
	var got struct {
		Pools []proxy.PoolStatus `json:"pools"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	if len(got.Pools) != 1 || len(got.Pools[0].Backends) != 2 {
		t.Fatalf("pools = %+v, want one pool with two backends", got.Pools)
	}
	b1, b2 := got.Pools[0].Backends[0], got.Pools[0].Backends[1]
	if b1.State != proxy.StateDraining || b1.EffectiveWeight != 0 {
		t.Errorf("drained backend = %+v, want state draining, effective weight 0", b1)
	}
	if b2.AdminWeight == nil || *b2.AdminWeight != 7 || b2.EffectiveWeight != 7 || b2.Weight != 2 {
		t.Errorf("reweighted backend = %+v, want admin weight 7, effective 7, configured 2", b2)
	}
	call(t, "POST", base+"/admin/pools/web/backends/127.0.0.1:9001/undrain", "")
	_, body = call(t, "GET", base+"/admin/pools", "")
	if !strings.Contains(body, `"state": "healthy"`) || strings.Contains(body, `"state": "draining"`) {
		t.Errorf("after undrain: %s, want no draining backend", body)
	}
}
