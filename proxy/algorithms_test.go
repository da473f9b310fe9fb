package proxy

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
)

// TestHashKeyKeepsUsersOnOneBackend: with hash_key header:X-User every user
// sticks to one backend, and users spread over all of them.
func TestHashKeyKeepsUsersOnOneBackend(t *testing.T) {
	for _, algorithm := range []string{"ring_hash", "maglev"} {
		t.Run(algorithm, func(t *testing.T) {
			bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
			yml := strings.Replace(poolYAML(algorithm, bs, nil), "    backends:", "    hash_key: header:X-User\n    backends:", 1)
			px := startProxy(t, yml)
			c := testClient(t)
			used := map[string]bool{}
			for u := range 30 {
				user := fmt.Sprintf("user-%d", u)
				_, first, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"X-User": user})
				for range 5 {
					if _, got, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"X-User": user}); got != first {
						t.Fatalf("%s went to %s, then %s; want one backend", user, first, got)
					}
				}
				used[first] = true
			}
			if len(used) != 3 {
				t.Errorf("30 users used backends %v, want all 3", used)
			}
		})
	}
}

// TestStickyCookie: the first response sets an opaque affinity cookie and
// later requests carrying it return to the same backend.
func TestStickyCookie(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	px := startProxy(t, poolYAML("sticky", bs, nil))
	c := testClient(t)
	for range 10 {
		req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		first := resp.Header.Get("X-Backend")
		var cookie *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "sluice_affinity" {
				cookie = ck
			}
		}
		if cookie == nil {
			t.Fatalf("first response has no sluice_affinity cookie: %v", resp.Header["Set-Cookie"])
		}
		for _, b := range bs {
			if strings.Contains(cookie.Value, b.addr()) || strings.Contains(cookie.Value, "127.0.0.1") {
				t.Fatalf("cookie %q reveals a backend address", cookie.Value)
			}
		}
		for range 5 {
			req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
			req.AddCookie(cookie)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Backend"); got != first {
				t.Fatalf("request with cookie went to %s, want %s", got, first)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("cookie set again on a request that already had a valid one")
			}
		}
	}
	// A cookie naming a backend that is gone falls back to the algorithm.
	req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
	req.AddCookie(&http.Cookie{Name: "sluice_affinity", Value: "nonexistent"})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Errorf("unknown cookie: status %d, cookies %v; want 200 and a fresh cookie", resp.StatusCode, resp.Cookies())
	}
}

// TestWeightsSeenAtUpstreams: weights 3:1 hold at the backends for every
// weighted algorithm (sequential requests: equal load for p2c and friends).
func TestWeightsSeenAtUpstreams(t *testing.T) {
	for _, algorithm := range []string{"round_robin", "random", "p2c", "least_conn"} {
		t.Run(algorithm, func(t *testing.T) {
			bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
			px := startProxy(t, poolYAML(algorithm, bs, []int{3, 1}))
			c := testClient(t)
			const n = 800
			for range n {
				get(t, c, "http://"+px.addr+"/", nil)
			}
			share := float64(bs[0].hits.Load()) / n
			if math.Abs(share-0.75) > 0.06 {
				t.Errorf("%s: heavy backend share = %.3f, want 0.75 ± 0.06 (hits %d:%d)", algorithm, share, bs[0].hits.Load(), bs[1].hits.Load())
			}
		})
	}
}
