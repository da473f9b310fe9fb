package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/proxy"
)

// r23AdminBackends starts elastic backends on 127.0.0.1, .2 and .3
// at one port, as a type A DNS pool reaches them.
func r23AdminBackends(t *testing.T) ([]*elasticBackend, int) {
	t.Helper()
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		free := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if !free {
			continue
		}
		var bs []*elasticBackend
		for _, ip := range ips {
			bs = append(bs, startElasticBackend(t, fmt.Sprintf("%s:%d", ip, port)))
		}
		return bs, port
	}
	t.Fatal("no port free on 127.0.0.1-3")
	return nil, 0
}

// TestAdminStateAcrossDNSChurn: a drain and a weight set through
// the admin API on DNS-discovered backends stay in force while DNS
// answers the same addresses in other orders, reloads restart the
// pool's watcher (a new interval) and admin calls race with both (README:
// "a drain or weight set through the API stays in force across reloads
// as long as the backend stays in the pool"); afterwards /admin/pools
// says what the data plane does: the drained backend gets nothing, the
// reweighted one five times the other's share. Run with -race.
func TestAdminStateAcrossDNSChurn(t *testing.T) {
	bs, port := r23AdminBackends(t)
	d := startTestDNS(t, "api.test.")
	d.set("127.0.0.1", "127.0.0.2", "127.0.0.3")
	listen, admin := freePort(t), freePort(t)
	render := func(interval string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: error}\nwatch_config: false\nroutes: [{pool: api}]\npools:\n  api:\n    algorithm: round_robin\n    discovery: {dns: {name: api.test., port: %d, type: A, interval: %s, resolver: %s}}\n",
			listen, admin, port, interval, d.addr)
	}
	path := writeConfig(t, render("100ms"))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	c := &http.Client{Timeout: 10 * time.Second}
	do := func(method, p, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+admin+p, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	b2, b3 := fmt.Sprintf("127.0.0.2:%d", port), fmt.Sprintf("127.0.0.3:%d", port)
	waitUntil(t, "all three discovered", 5*time.Second, func() bool {
		_, s := do("GET", "/admin/pools", "")
		return strings.Contains(s, b2) && strings.Contains(s, b3)
	})
	var wg sync.WaitGroup
	deadline := time.Now().Add(1500 * time.Millisecond)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				code := 200
				switch i {
				case 0: // reloads that restart the watcher
					replaceFile(t, path, render([]string{"150ms", "100ms"}[n%2]))
					code, _ = do("POST", "/admin/reload", "")
				case 1:
					if n%2 == 0 {
						code, _ = do("POST", "/admin/pools/api/backends/"+b2+"/drain", "")
					} else {
						code, _ = do("PUT", "/admin/pools/api/backends/"+b3+"/weight", `{"weight": 5}`)
					}
				case 2: // the same addresses, in other orders
					if n%2 == 0 {
						d.set("127.0.0.3", "127.0.0.2", "127.0.0.1")
					} else {
						d.set("127.0.0.2", "127.0.0.1", "127.0.0.3")
					}
					time.Sleep(30 * time.Millisecond)
				case 3:
					code, _ = do("GET", "/admin/pools", "")
				}
				if code != 200 {
					t.Errorf("goroutine %d: admin call answered %d, want 200", i, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	_, s := do("GET", "/admin/pools", "")
	var got struct{ Pools []proxy.PoolStatus }
	if err := json.Unmarshal([]byte(s), &got); err != nil || len(got.Pools) != 1 {
		t.Fatalf("/admin/pools = %s (%v)", s, err)
	}
	for _, b := range got.Pools[0].Backends {
		switch b.Address {
		case b2:
			if !b.AdminDrained || b.EffectiveWeight != 0 {
				t.Errorf("%s after the churn: %+v, want admin_drained, effective weight 0", b2, b)
			}
		case b3:
			if b.AdminWeight == nil || *b.AdminWeight != 5 || b.EffectiveWeight != 5 {
				t.Errorf("%s after the churn: %+v, want admin weight 5, effective 5", b3, b)
			}
		}
	}
	for _, b := range bs {
		b.hits.Store(0)
	}
	for range 60 {
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	h1, h2, h3 := bs[0].hits.Load(), bs[1].hits.Load(), bs[2].hits.Load()
	if h2 != 0 || h1+h3 != 60 || h3 < 3*h1 {
		t.Errorf("60 requests after the churn: %d, %d (drained), %d (weight 5); want none on the drained one and about 1:5", h1, h2, h3)
	}
}
