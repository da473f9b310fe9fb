//go:build !race

package proxy

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestLBZeroAllocsEveryAlgorithm: README (Design): the request
// path allocates nothing in steady state; (Balancing algorithms) "A pick
// takes no lock, makes no allocation". TestProxyZeroAllocs drives only
// round_robin; this drives a proxied GET through every algorithm and
// every hash_key kind, with weights. Holds.
func TestLBZeroAllocsEveryAlgorithm(t *testing.T) {
	for _, tc := range []struct{ name, lines, cookie string }{
		{"p2c", "    algorithm: p2c\n", ""},
		{"random", "    algorithm: random\n", ""},
		{"least_conn", "    algorithm: least_conn\n", ""},
		{"ewma", "    algorithm: ewma\n", ""},
		{"ring_hash/path", "    algorithm: ring_hash\n    hash_key: path\n", ""},
		{"ring_hash/header", "    algorithm: ring_hash\n    hash_key: header:X-Forwarded-For\n", ""},
		{"maglev/query", "    algorithm: maglev\n    hash_key: query:x\n", ""},
		{"maglev/cookie", "    algorithm: maglev\n    hash_key: cookie:u\n", "u=alice"},
		{"maglev/host", "    algorithm: maglev\n    hash_key: host\n", ""},
		{"maglev/source_ip", "    algorithm: maglev\n    hash_key: source_ip\n", ""},
		{"sticky/no cookie", "    algorithm: sticky\n", ""},
		{"slow_start p2c", "    algorithm: p2c\n    slow_start: 1h\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newInMemoryRigPool(t, tc.lines, true, 3, nil)
			defer rig.stop()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://sluice/index.html?x=1")
			req.Header.Set("X-Forwarded-For", "198.51.100.7")
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			do := func() {
				if err := rig.client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					t.Fatalf("Do() = %v, status %d", err, resp.StatusCode())
				}
			}
			for range 1000 {
				do()
			}
			if got := testing.AllocsPerRun(2000, do); got != 0 {
				t.Errorf("allocs per proxied GET = %v, want 0", got)
			}
		})
	}
}
