package proxy

import (
	"net/http"
	"testing"

	"sluice/balancer"
)

// TestStickySecretRejectsUnkeyedID: with sticky.secret the cookie is an
// HMAC; the unkeyed backend id (an
// FNV hash of pool and address, computable by anyone who can guess the
// address) must not pin a request to that backend. Not covered before:
// TestStickySecret checks only that the HMAC cookie routes back.
func TestStickySecretRejectsUnkeyedID(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	yml := poolYAML("round_robin", bs, nil)
	yml = yml[:len("routes:\n  - pool: p\npools:\n  p:\n")] + "    sticky: { cookie: aff, secret: s3cret }\n" + yml[len("routes:\n  - pool: p\npools:\n  p:\n"):]
	px := startProxy(t, yml)
	c := testClient(t)
	forged := balancer.BackendID("p", bs[1].addr())
	seen := map[string]int{}
	for range 10 {
		req, _ := http.NewRequest("GET", "http://"+px.addr+"/", nil)
		req.AddCookie(&http.Cookie{Name: "aff", Value: forged})
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seen[resp.Header.Get("X-Backend")]++
		if len(resp.Cookies()) != 1 {
			t.Fatalf("forged unkeyed id %q: cookies %v, want a fresh HMAC cookie", forged, resp.Header["Set-Cookie"])
		}
	}
	if seen["a"] == 0 {
		t.Errorf("forged unkeyed id pinned every request: %v", seen)
	}
}
