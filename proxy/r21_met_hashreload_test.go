package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestHashKeyStableAcrossReloads: for ring_hash and maglev pools
// keyed by a header, a cookie, a query parameter, the path or the host,
// every key keeps its backend through reloads that leave the pool as it
// was: new upstream timeouts (every backend gets a new client), the
// backends listed in another order, another pool and route added, and
// slow_start turned on (which ramps no backend that stays).
func TestHashKeyStableAcrossReloads(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil), startBackend(t, "d", nil)}
	extra := startBackend(t, "x", nil)
	keys := []struct {
		hashKey string
		with    func(req *http.Request, k string)
	}{
		{"header:X-User", func(r *http.Request, k string) { r.Header.Set("X-User", k) }},
		{"cookie:sid", func(r *http.Request, k string) { r.Header.Set("Cookie", "a=1; sid="+k+"; z=2") }},
		{"query:u", func(r *http.Request, k string) { r.URL.RawQuery = "x=1&u=" + k }},
		{"path", func(r *http.Request, k string) { r.URL.Path = "/items/" + k }},
		{"host", func(r *http.Request, k string) { r.Host = k + ".example" }},
	}
	for _, alg := range []string{"ring_hash", "maglev"} {
		for _, kk := range keys {
			t.Run(alg+"/"+kk.hashKey, func(t *testing.T) {
				yml := func(order []int, response string, more bool, slow string) string {
					y := ""
					if more {
						y += "routes:\n  - { match: { path_prefix: /other/ }, pool: o }\n  - pool: p\n"
					} else {
						y += "routes:\n  - pool: p\n"
					}
					y += "pools:\n  p:\n    algorithm: " + alg + "\n    hash_key: \"" + kk.hashKey + "\"\n" + slow + "    backends:\n"
					for _, i := range order {
						y += fmt.Sprintf("      - { address: %s, weight: %d }\n", bs[i].addr(), 1+i%2)
					}
					if more {
						y += "  o: { backends: [{ address: " + extra.addr() + " }] }\n"
					}
					return y + "timeouts: { response: " + response + " }\n"
				}
				px := startProxy(t, yml([]int{0, 1, 2, 3}, "5s", false, ""))
				c := testClient(t)
				route := func() map[string]string {
					got := map[string]string{}
					for u := range 24 {
						k := fmt.Sprintf("user%d", u)
						req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
						kk.with(req, k)
						resp, err := c.Do(req)
						if err != nil {
							t.Fatal(err)
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							t.Fatalf("key %s: status %d", k, resp.StatusCode)
						}
						got[k] = resp.Header.Get("X-Backend")
					}
					return got
				}
				before := route()
				for i, y := range []string{
					yml([]int{0, 1, 2, 3}, "6s", false, ""),
					yml([]int{3, 1, 0, 2}, "6s", false, ""),
					yml([]int{2, 0, 3, 1}, "6s", true, ""),
					yml([]int{1, 3, 2, 0}, "7s", true, "    slow_start: 30s\n"),
				} {
					apply(t, px, y)
					after := route()
					for k, b := range before {
						if after[k] != b {
							t.Errorf("reload %d: key %s moved from %s to %s", i, k, b, after[k])
						}
					}
				}
			})
		}
	}
}
