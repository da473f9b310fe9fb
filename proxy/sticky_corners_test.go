package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"sluice/balancer"
	"sluice/config"
)

// r16eCookie returns the value of the Set-Cookie named name on resp ("" if none)
// and how many Set-Cookie fields of that name came.
func r16eCookie(resp *http.Response, name string) (string, int) {
	v, n := "", 0
	for _, ck := range resp.Cookies() {
		if ck.Name == name {
			v, n = ck.Value, n+1
		}
	}
	return v, n
}

func r16eByID(bs []*testBackend) map[string]string {
	m := map[string]string{}
	for _, b := range bs {
		m[b.name] = balancer.BackendID("p", b.addr())
	}
	return m
}

// TestStickyCookieParsing: the affinity cookie is found in a
// second Cookie field, quoted, among cookies whose names contain it, with
// blanks around; names that only contain it, and an empty value, get a
// fresh pick and a fresh cookie.
func TestStickyCookieParsing(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	px := startProxy(t, poolYAML("sticky", bs, nil))
	id := r16eByID(bs)
	pinned := map[string]string{
		"two fields":     "Cookie: x=1\r\nCookie: sluice_affinity=" + id["b"] + "\r\n",
		"quoted":         "Cookie: sluice_affinity=\"" + id["b"] + "\"\r\n",
		"prefix, suffix": "Cookie: xsluice_affinity=" + id["a"] + "; sluice_affinity_x=" + id["c"] + "; sluice_affinity=" + id["b"] + "\r\n",
		"blanks":         "Cookie: a=1;   sluice_affinity=" + id["b"] + "  ; z=2\r\n",
		"first wins":     "Cookie: sluice_affinity=" + id["b"] + "; sluice_affinity=" + id["a"] + "\r\n",
		// The first line wins beside a hop-by-hop field too: the cookie
		// was read after their removal, which can reorder repeated
		// lines (found by fuzzing, session 23).
		"first field wins": "Keep-Alive: 5\r\nCookie: sluice_affinity=" + id["b"] + "\r\nCookie: sluice_affinity=" + id["a"] + "\r\n",
		"many fields":      strings.Repeat("Cookie: k=v\r\n", 60) + "Cookie: sluice_affinity=" + id["b"] + ";\r\n",
		"big neighbour":    "Cookie: big=" + strings.Repeat("x", 3000) + "; sluice_affinity=" + id["b"] + "\r\n",
	}
	for name, hdr := range pinned {
		for range 12 {
			resp := rawExchange(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n"+hdr+"\r\n")
			if got := resp.Header.Get("X-Backend"); got != "b" {
				t.Fatalf("%s: went to %s, want b", name, got)
			}
			if v, n := r16eCookie(resp, "sluice_affinity"); n != 0 {
				t.Fatalf("%s: cookie set again (%q) on a pinned request", name, v)
			}
		}
	}
	fresh := map[string]string{
		"empty":        "Cookie: sluice_affinity=\r\n",
		"only prefix":  "Cookie: xsluice_affinity=" + id["b"] + "\r\n",
		"only suffix":  "Cookie: sluice_affinity2=" + id["b"] + "\r\n",
		"no equals":    "Cookie: sluice_affinity\r\n",
		"bad id":       "Cookie: sluice_affinity=" + strings.Repeat("z", 4000) + "\r\n",
		"case differs": "Cookie: SLUICE_AFFINITY=" + id["b"] + "\r\n",
	}
	for name, hdr := range fresh {
		resp := rawExchange(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n"+hdr+"\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", name, resp.StatusCode)
		}
		v, n := r16eCookie(resp, "sluice_affinity")
		if n != 1 || v != id[resp.Header.Get("X-Backend")] {
			t.Errorf("%s: Set-Cookie %v for backend %s, want one naming it", name, resp.Header["Set-Cookie"], resp.Header.Get("X-Backend"))
		}
	}
}

// TestStickyRetryMovesSession: a session's backend that refuses
// connections: the request is retried elsewhere and the client is given
// the new backend's cookie, which the jar keeps and the next requests
// follow without being re-cookied.
func TestStickyRetryMovesSession(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	px := startProxy(t, poolYAML("sticky", bs, nil))
	jar, _ := cookiejar.New(nil)
	c := testClient(t)
	c.Jar = jar
	u := "http://" + px.addr + "/"
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	first := resp.Header.Get("X-Backend")
	other := "a"
	for _, b := range bs {
		if b.name == first {
			b.srv.Close()
		} else {
			other = b.name
		}
	}
	for i := range 5 {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != other {
			t.Fatalf("request %d after %s died: %d from %s, want 200 from %s", i, first, resp.StatusCode, resp.Header.Get("X-Backend"), other)
		}
		_, n := r16eCookie(resp, "sluice_affinity")
		if i == 0 && n != 1 {
			t.Fatalf("moved session not re-cookied: %v", resp.Header["Set-Cookie"])
		}
		if i > 0 && n != 0 {
			t.Fatalf("request %d re-cookied again: %v", i, resp.Header["Set-Cookie"])
		}
	}
	pu, _ := url.Parse(u)
	for _, ck := range jar.Cookies(pu) {
		if ck.Name == "sluice_affinity" && ck.Value != balancer.BackendID("p", bs[map[string]int{"a": 0, "b": 1}[other]].addr()) {
			t.Errorf("jar holds %q, not %s's id", ck.Value, other)
		}
	}
}

// TestStickyHeadAnd304: HEAD and 304 answers carry the cookie on
// a fresh pick, nothing on a pinned one; the backend's own cookies pass.
func TestStickyHeadAnd304(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "app", Value: "1"})
		if r.Header.Get("If-None-Match") == `"x"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"x"`)
		io.WriteString(w, "body")
	}
	bs := []*testBackend{startBackend(t, "a", h), startBackend(t, "b", h)}
	px := startProxy(t, poolYAML("sticky", bs, nil))
	id := r16eByID(bs)
	c := testClient(t)
	do := func(method, inm, cookie string) *http.Response {
		req, _ := http.NewRequest(method, "http://"+px.addr+"/", nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		if cookie != "" {
			req.Header.Set("Cookie", "sluice_affinity="+cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct{ method, inm string }{{"HEAD", ""}, {"GET", `"x"`}} {
		resp := do(tc.method, tc.inm, "")
		v, n := r16eCookie(resp, "sluice_affinity")
		if _, na := r16eCookie(resp, "app"); na != 1 || n != 1 || v != id[resp.Header.Get("X-Backend")] {
			t.Errorf("%s fresh: %d, Set-Cookie %v", tc.method, resp.StatusCode, resp.Header["Set-Cookie"])
		}
		resp = do(tc.method, tc.inm, id["b"])
		if _, n := r16eCookie(resp, "sluice_affinity"); n != 0 || resp.Header.Get("X-Backend") != "b" {
			t.Errorf("%s pinned: %d from %s, Set-Cookie %v", tc.method, resp.StatusCode, resp.Header.Get("X-Backend"), resp.Header["Set-Cookie"])
		}
	}
}

// TestStickyStableAcrossReloadsAndProcesses: the cookie value of
// a backend is the same in a second proxy (a -workers sibling) and after a
// reload that reorders the backends; a changed secret re-cookies.
func TestStickyStableAcrossReloadsAndProcesses(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	yml := func(secret string, order []int) string {
		y := "routes:\n  - pool: p\npools:\n  p:\n    sticky: { cookie: aff, secret: " + secret + " }\n    backends:\n"
		for _, i := range order {
			y += fmt.Sprintf("      - { address: %s }\n", bs[i].addr())
		}
		return y
	}
	p1 := startProxy(t, yml("s1", []int{0, 1, 2}))
	p2 := startProxy(t, yml("s1", []int{2, 0, 1}))
	vals := map[string]string{}
	for range 30 {
		resp := rawExchange(t, p1.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		v, _ := r16eCookie(resp, "aff")
		vals[resp.Header.Get("X-Backend")] = v
	}
	if len(vals) != 3 {
		t.Fatalf("30 fresh requests reached %v", vals)
	}
	check := func(what, addr string) {
		for name, v := range vals {
			resp := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+v+"\r\n\r\n")
			if _, n := r16eCookie(resp, "aff"); n != 0 || resp.Header.Get("X-Backend") != name {
				t.Errorf("%s: cookie of %s went to %s, Set-Cookie %v", what, name, resp.Header.Get("X-Backend"), resp.Header["Set-Cookie"])
			}
		}
	}
	check("second process", p2.addr)
	cfg, err := config.Parse("t.yaml", []byte(yml("s1", []int{1, 2, 0})))
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.ctrl.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	check("reload, reordered", p1.addr)
	cfg, _ = config.Parse("t.yaml", []byte(yml("s2", []int{0, 1, 2})))
	if err := p1.ctrl.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	resp := rawExchange(t, p1.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+vals["a"]+"\r\n\r\n")
	if _, n := r16eCookie(resp, "aff"); n != 1 {
		t.Errorf("after a secret change the old cookie was accepted: %v", resp.Header["Set-Cookie"])
	}
}

// TestStickyBackendSetsSameName: a backend whose own Set-Cookie
// uses sluice's affinity name (an app, or a nested sluice, using the
// default name) on a request pinned to it. HAProxy's "cookie insert"
// removes a server's cookie of the persistence name (unless "preserve").
//
// Found by review, fixed: expected the client's session to survive (the backend's same-name
// Set-Cookie dropped, or at least sluice's own cookie re-sent after it);
// before the fix: the backend's "sluice_affinity=app-value" alone reaches the
// client, whose jar replaces the affinity cookie, so the next request is
// re-picked at random and the session is lost.
func TestStickyBackendSetsSameName(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sluice_affinity", Value: "app-value", Path: "/"})
	}
	bs := []*testBackend{startBackend(t, "a", h), startBackend(t, "b", h)}
	px := startProxy(t, poolYAML("sticky", bs, nil))
	jar, _ := cookiejar.New(nil)
	c := testClient(t)
	c.Jar = jar
	seen := map[string]int{}
	for range 20 {
		resp, err := c.Get("http://" + px.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.Header.Get("X-Backend")]++
	}
	if len(seen) != 1 {
		t.Errorf("a jar client's session moved between backends %v: the backend's own sluice_affinity Set-Cookie overwrote sluice's", seen)
	}
}

// TestStickyAdminIDIsCookie: README says /admin/pools reports
// each backend's "id (its sticky-cookie id)".
//
// Found by review, fixed: expected, with sticky.secret, the id an operator can match to a
// client's cookie (the HMAC sluice sets); before the fix, the unkeyed
// BackendID, which no cookie carries (and which the secret exists to
// keep out of sight).
func TestStickyAdminIDIsCookie(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil)}
	yml := "routes:\n  - pool: p\npools:\n  p:\n    sticky: { cookie: aff, secret: s3cret }\n    backends:\n      - { address: " + bs[0].addr() + " }\n"
	px := startProxy(t, yml)
	resp := rawExchange(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	v, _ := r16eCookie(resp, "aff")
	st, err := px.ctrl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		for _, b := range p.Backends {
			if b.ID != v {
				t.Errorf("admin id %q, but the backend's sticky cookie is aff=%q", b.ID, v)
			}
		}
	}
}
