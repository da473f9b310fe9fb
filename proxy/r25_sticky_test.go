package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/balancer"
	"sluice/config"
)

// r25StickyHolder is a backend that reads one request head per
// connection, reports it on got, and closes the connection without an
// answer once release is closed (a backend that dies mid-request).
type r25StickyHolder struct {
	ln      net.Listener
	got     chan struct{}
	release chan struct{}
	wg      sync.WaitGroup
}

func r25StickyStartHolder(t *testing.T) *r25StickyHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &r25StickyHolder{ln: ln, got: make(chan struct{}, 16), release: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(8 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				h.got <- struct{}{}
				select {
				case <-h.release:
				case <-time.After(8 * time.Second):
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		h.wg.Wait()
	})
	return h
}

func (h *r25StickyHolder) addr() string { return h.ln.Addr().String() }

// r25StickyYAML is a sticky pool p (cookie aff) over addrs in order.
func r25StickyYAML(extra string, addrs ...string) string {
	y := "routes:\n  - pool: p\npools:\n  p:\n    sticky: { cookie: aff }\n" + extra + "    backends:\n"
	for _, a := range addrs {
		y += fmt.Sprintf("      - { address: %s }\n", a)
	}
	return y
}

func r25StickyApply(t *testing.T, px *testProxy, yml string) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.ctrl.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// r25StickySetCookies returns the raw Set-Cookie values of resp
// whose cookie is named name.
func r25StickySetCookies(resp *http.Response, name string) []string {
	var out []string
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, name+"=") {
			out = append(out, v)
		}
	}
	return out
}

// TestStickyRetryAfterSnapshotChangeRecookies: a session's
// backend a breaks the connection of a request in flight; meanwhile a new
// snapshot is published (a reload that reorders or removes backends, or
// just an admin drain of another backend), and the retry goes to b from
// it. The client was served by b and must get b's cookie (README: a
// session whose backend fails gets a new cookie; TestStickyRetryMovesSession
// without the snapshot change). The handler compares the index of the
// cookie's backend in the request's first snapshot (stuck) with the index
// of the retry's backend in the new one (idx), which coincide here, so no
// cookie is set: the client keeps a's cookie (and goes back to a, still
// in the pool, on its next request).
func TestStickyRetryAfterSnapshotChangeRecookies(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before lists the pool's backends (a, b, c) at the start;
		// change is what happens while the request is on a: a reload,
		// or an admin drain of c, listed before a, which moves a and b
		// up one place in the snapshot (c goes to the held section).
		// Either way b, the one backend left to retry on, then has the
		// index a had.
		before func(a, b, c string) []string
		change func(t *testing.T, px *testProxy, a, b, c string)
	}{
		{"reordered by a reload", func(a, b, c string) []string { return []string{a, b} }, func(t *testing.T, px *testProxy, a, b, c string) {
			r25StickyApply(t, px, r25StickyYAML("", b, a))
		}},
		{"removed by a reload", func(a, b, c string) []string { return []string{a, b} }, func(t *testing.T, px *testProxy, a, b, c string) {
			r25StickyApply(t, px, r25StickyYAML("", b))
		}},
		{"another drained", func(a, b, c string) []string { return []string{c, a, b} }, func(t *testing.T, px *testProxy, a, b, c string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := px.ctrl.SetDrain(ctx, "p", c, true); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := r25StickyStartHolder(t)
			b := startBackend(t, "b", nil)
			c := startBackend(t, "c", nil)
			px := startProxy(t, r25StickyYAML("", tc.before(a.addr(), b.addr(), c.addr())...))
			idA, idB := balancer.BackendID("p", a.addr()), balancer.BackendID("p", b.addr())

			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				conn, err := net.Dial("tcp", px.addr)
				if err != nil {
					done <- result{nil, err}
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
				_, _ = fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff=%s\r\n\r\n", idA)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err == nil {
					resp.Body.Close()
				}
				done <- result{resp, err}
			}()
			select {
			case <-a.got:
			case <-time.After(5 * time.Second):
				t.Fatal("the pinned request never reached A")
			}
			tc.change(t, px, a.addr(), b.addr(), c.addr())
			close(a.release)
			var r result
			select {
			case r = <-done:
			case <-time.After(8 * time.Second):
				t.Fatal("no answer")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.resp.StatusCode != 200 {
				t.Fatalf("retry = %d, want 200", r.resp.StatusCode)
			}
			if be := r.resp.Header.Get("X-Backend"); be != "b" {
				t.Fatalf("retry served by %q, want b", be)
			}
			got := r25StickySetCookies(r.resp, "aff")
			if len(got) != 1 || !strings.HasPrefix(got[0], "aff="+idB+";") {
				t.Errorf("served by b after a retry, Set-Cookie %q; want one aff=%s (b's): the client keeps A's cookie (%s)", got, idB, idA)
			}
		})
	}
}

// r25StickyRaw sends raw on a new connection and returns the answer
// (body read and closed).
func r25StickyRaw(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.80q: %v", raw, err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp
}

// TestStickyHashWeightsEndToEnd: ring_hash and maglev follow the
// weights (README: "Shares follow weight for every algorithm but ewma"):
// 1:3 over many distinct keys, through the proxy.
func TestStickyHashWeightsEndToEnd(t *testing.T) {
	for _, algorithm := range []string{"ring_hash", "maglev"} {
		t.Run(algorithm, func(t *testing.T) {
			bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
			yml := strings.Replace(poolYAML(algorithm, bs, []int{1, 3}), "    backends:", "    hash_key: header:X-K\n    backends:", 1)
			px := startProxy(t, yml)
			c := testClient(t)
			const n = 1000
			for i := range n {
				if code, _, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"X-K": fmt.Sprintf("user-%d", i)}); code != 200 {
					t.Fatalf("status %d", code)
				}
			}
			share := float64(bs[0].hits.Load()) / n
			if share < 0.17 || share > 0.33 {
				t.Errorf("weight-1 backend took %.3f of %d keys, want about 0.25", share, n)
			}
		})
	}
}

// TestStickySetCookieAttributes: the affinity cookie is
// "NAME=ID; Path=/; HttpOnly; SameSite=Lax" (no Domain, no Secure, no
// Max-Age: a session cookie), once, on a fresh pick only; the backend's
// own Set-Cookie fields pass byte for byte, also several of one name
// with other paths and an Expires date with a comma, for a plain answer
// and a chunked one; the backend's own cookie of the affinity name is
// dropped (README).
func TestStickySetCookieAttributes(t *testing.T) {
	own := []string{
		"sid=1; Path=/a; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Secure",
		"sid=2; Path=/b",
		"theme=dark; Max-Age=60; HttpOnly",
		"bare",
	}
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) {
				for _, v := range own {
					w.Header().Add("Set-Cookie", v)
				}
				w.Header().Add("Set-Cookie", "aff=app; Path=/other")
				if chunked {
					w.Write([]byte("x"))
					w.(http.Flusher).Flush()
				}
				w.Write([]byte("body"))
			}
			bs := []*testBackend{startBackend(t, "a", h), startBackend(t, "b", h)}
			px := startProxy(t, r25StickyYAML("", bs[0].addr(), bs[1].addr()))
			ids := map[string]string{"a": balancer.BackendID("p", bs[0].addr()), "b": balancer.BackendID("p", bs[1].addr())}
			check := func(what string, resp *http.Response, wantAff string) {
				t.Helper()
				got := resp.Header.Values("Set-Cookie")
				var others []string
				var aff []string
				for _, v := range got {
					if strings.HasPrefix(v, "aff=") {
						aff = append(aff, v)
					} else {
						others = append(others, v)
					}
				}
				if strings.Join(others, "\n") != strings.Join(own, "\n") {
					t.Errorf("%s: backend's Set-Cookie fields came as %q, want %q", what, others, own)
				}
				switch {
				case wantAff == "" && len(aff) != 0:
					t.Errorf("%s: Set-Cookie %q on a pinned request", what, aff)
				case wantAff != "" && (len(aff) != 1 || aff[0] != wantAff):
					t.Errorf("%s: affinity Set-Cookie %q, want [%q]", what, aff, wantAff)
				}
			}
			resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			be := resp.Header.Get("X-Backend")
			check("fresh", resp, "aff="+ids[be]+"; Path=/; HttpOnly; SameSite=Lax")
			resp = r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+ids[be]+"\r\n\r\n")
			if resp.Header.Get("X-Backend") != be {
				t.Fatalf("pinned request went to %s, want %s", resp.Header.Get("X-Backend"), be)
			}
			// The backend's own aff cookie was dropped: the session's goes
			// again in its place (TestStickyBackendSetsSameName).
			check("pinned", resp, "aff="+ids[be]+"; Path=/; HttpOnly; SameSite=Lax")
		})
	}
}

// TestStickyHashKeyFallbacks: a hash key that is missing or empty
// gets a random pick (served, spread); a repeated one hashes its first
// value, every time.
func TestStickyHashKeyFallbacks(t *testing.T) {
	for _, tc := range []struct {
		hashKey  string
		first    string // a request line + fields with the key "k1"
		repeated string // the key k1 first, then k2
		missing  []string
	}{
		{"header:X-K", "GET / HTTP/1.1\r\nHost: h\r\nX-K: k1\r\n", "GET / HTTP/1.1\r\nHost: h\r\nX-K: k1\r\nX-K: k2\r\n",
			[]string{"GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTTP/1.1\r\nHost: h\r\nX-K:\r\n", "GET / HTTP/1.1\r\nHost: h\r\nX-K:   \r\n"}},
		{"cookie:k", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=k1\r\n", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=k1; k=k2\r\nCookie: k=k3\r\n",
			[]string{"GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTTP/1.1\r\nHost: h\r\nCookie: k=\r\n", "GET / HTTP/1.1\r\nHost: h\r\nCookie: kk=k1; k\r\n"}},
		{"query:k", "GET /?k=k1 HTTP/1.1\r\nHost: h\r\n", "GET /?x=1&k=k1&k=k2 HTTP/1.1\r\nHost: h\r\n",
			[]string{"GET / HTTP/1.1\r\nHost: h\r\n", "GET /?k= HTTP/1.1\r\nHost: h\r\n", "GET /?k HTTP/1.1\r\nHost: h\r\n", "GET /?kk=k1 HTTP/1.1\r\nHost: h\r\n"}},
	} {
		for _, algorithm := range []string{"ring_hash", "maglev"} {
			t.Run(tc.hashKey+"/"+algorithm, func(t *testing.T) {
				bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil), startBackend(t, "d", nil)}
				yml := strings.Replace(poolYAML(algorithm, bs, nil), "    backends:", "    hash_key: \""+tc.hashKey+"\"\n    backends:", 1)
				px := startProxy(t, yml)
				want := r25StickyRaw(t, px.addr, tc.first+"\r\n").Header.Get("X-Backend")
				for range 8 {
					resp := r25StickyRaw(t, px.addr, tc.repeated+"\r\n")
					if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != want {
						t.Fatalf("repeated key: %d from %s, want 200 from %s (the first value's)", resp.StatusCode, resp.Header.Get("X-Backend"), want)
					}
				}
				for _, m := range tc.missing {
					seen := map[string]bool{}
					for range 40 {
						resp := r25StickyRaw(t, px.addr, m+"\r\n")
						if resp.StatusCode != 200 {
							t.Fatalf("%q: status %d", m, resp.StatusCode)
						}
						seen[resp.Header.Get("X-Backend")] = true
					}
					if len(seen) < 2 {
						t.Errorf("%q: 40 requests without the key all went to %v, want a random pick", m, seen)
					}
				}
			})
		}
	}
}

// TestStickyHostileCookieValues: forged, truncated, oversized,
// doubled, quoted or binary affinity values never panic and never reach
// a backend a cookie may not select (a removed one, an unkeyed id under a
// secret); an unknown value gets a fresh pick and a fresh cookie.
func TestStickyHostileCookieValues(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "gone", nil)}
	const secret = "s3cret"
	yml := func(addrs ...string) string {
		y := "routes:\n  - pool: p\npools:\n  p:\n    sticky: { cookie: aff, secret: " + secret + " }\n    backends:\n"
		for _, a := range addrs {
			y += fmt.Sprintf("      - { address: %s }\n", a)
		}
		return y
	}
	px := startProxy(t, yml(bs[0].addr(), bs[1].addr(), bs[2].addr()))
	ids := map[string]string{}
	for range 60 {
		resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if v := r25StickySetCookies(resp, "aff"); len(v) == 1 {
			ids[resp.Header.Get("X-Backend")] = strings.TrimPrefix(strings.SplitN(v[0], ";", 2)[0], "aff=")
		}
	}
	if len(ids) != 3 {
		t.Fatalf("60 fresh requests set cookies for %v", ids)
	}
	r25StickyApply(t, px, yml(bs[0].addr(), bs[1].addr()))
	idA := ids["a"]
	hostile := []string{
		ids["gone"],
		balancer.BackendID("p", bs[0].addr()), // unkeyed
		idA[:len(idA)-1],
		idA + idA,
		idA + "0",
		strings.ToUpper(idA),
		strings.Repeat("f", 24),
		strings.Repeat("A", 6000),
		"%" + idA,
		"\xff\xfe" + idA,
		"=" + idA,
		"aff=" + idA,
		"\"" + ids["gone"] + "\"",
	}
	for _, v := range hostile {
		resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+v+"\r\n\r\n")
		be := resp.Header.Get("X-Backend")
		if resp.StatusCode != 200 || (be != "a" && be != "b") {
			t.Errorf("aff=%.40q: %d from %q, want 200 from a or b", v, resp.StatusCode, be)
			continue
		}
		set := r25StickySetCookies(resp, "aff")
		if len(set) != 1 || !strings.HasPrefix(set[0], "aff="+ids[be]+";") {
			t.Errorf("aff=%.40q: served by %s with Set-Cookie %q, want a fresh cookie naming it", v, be, set)
		}
	}
	// Still alive, and a good cookie still pins.
	for range 5 {
		resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+idA+"\r\n\r\n")
		if resp.Header.Get("X-Backend") != "a" || len(r25StickySetCookies(resp, "aff")) != 0 {
			t.Fatalf("a's cookie: from %s, Set-Cookie %q", resp.Header.Get("X-Backend"), resp.Header.Values("Set-Cookie"))
		}
	}
}

// TestStickyDrainedSessionSurvivesReload: a backend drained
// through the admin API keeps its sessions (README) and stays drained
// across a reload that keeps it (README: "a drain ... set through the API
// stays in force across reloads"): its session keeps reaching it without
// a new cookie, and new sessions never do.
func TestStickyDrainedSessionSurvivesReload(t *testing.T) {
	bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil)}
	px := startProxy(t, r25StickyYAML("", bs[0].addr(), bs[1].addr()))
	idA := balancer.BackendID("p", bs[0].addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.ctrl.SetDrain(ctx, "p", bs[0].addr(), true); err != nil {
		t.Fatal(err)
	}
	// A reload that keeps a (reordered, another setting changed).
	r25StickyApply(t, px, r25StickyYAML("    preserve_host: false\n", bs[1].addr(), bs[0].addr()))
	for range 10 {
		resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+idA+"\r\n\r\n")
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "a" || len(r25StickySetCookies(resp, "aff")) != 0 {
			t.Fatalf("drained a's session after a reload: %d from %s, Set-Cookie %q; want a, no new cookie", resp.StatusCode, resp.Header.Get("X-Backend"), resp.Header.Values("Set-Cookie"))
		}
	}
	for range 30 {
		resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.Header.Get("X-Backend") != "b" {
			t.Fatalf("a new session went to %s, want b (a is drained)", resp.Header.Get("X-Backend"))
		}
	}
}

// TestStickyAcrossDNSAnswers: sessions and hash keys survive a DNS
// answer that lists the same backends in another order; a backend the
// answer drops loses its sessions (a new cookie) and its keys, which go
// back to it when it returns (README, Consistency).
func TestStickyAcrossDNSAnswers(t *testing.T) {
	for _, mode := range []string{"sticky", "ring_hash", "maglev"} {
		t.Run(mode, func(t *testing.T) {
			bs := []*testBackend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
			yml := "routes: [{pool: p}]\npools:\n  p:\n    discovery: {dns: {name: svc.test, port: 80, type: A, interval: 10s}}\n"
			if mode == "sticky" {
				yml += "    sticky: { cookie: aff }\n"
			} else {
				yml += "    algorithm: " + mode + "\n    hash_key: header:X-K\n"
			}
			px := startProxy(t, yml)
			cfg, err := config.Parse("test.yaml", []byte(yml))
			if err != nil {
				t.Fatal(err)
			}
			answer := func(order ...int) {
				t.Helper()
				var ds []DiscoveredBackend
				for _, i := range order {
					ds = append(ds, DiscoveredBackend{Address: bs[i].addr(), Weight: 1})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := px.ctrl.SetDiscovered(ctx, "p", *cfg.Pools["p"].Discovery.DNS, ds); err != nil {
					t.Fatal(err)
				}
			}
			answer(0, 1, 2)
			// reqs: 60 clients (a cookie each, or a key each), and where
			// each went.
			type client struct{ key, cookie, at string }
			var clients []*client
			send := func(cl *client) *http.Response {
				raw := "GET / HTTP/1.1\r\nHost: h\r\n"
				if cl.cookie != "" {
					raw += "Cookie: aff=" + cl.cookie + "\r\n"
				}
				if cl.key != "" {
					raw += "X-K: " + cl.key + "\r\n"
				}
				return r25StickyRaw(t, px.addr, raw+"\r\n")
			}
			for i := range 60 {
				cl := &client{}
				if mode != "sticky" {
					cl.key = fmt.Sprintf("user-%d", i)
				}
				resp := send(cl)
				cl.at = resp.Header.Get("X-Backend")
				if mode == "sticky" {
					set := r25StickySetCookies(resp, "aff")
					if len(set) != 1 {
						t.Fatalf("fresh request: Set-Cookie %q", set)
					}
					cl.cookie = strings.TrimPrefix(strings.SplitN(set[0], ";", 2)[0], "aff=")
				}
				clients = append(clients, cl)
			}
			check := func(what string, gone string) {
				t.Helper()
				for _, cl := range clients {
					resp := send(cl)
					got := resp.Header.Get("X-Backend")
					set := r25StickySetCookies(resp, "aff")
					switch {
					case resp.StatusCode != 200:
						t.Fatalf("%s: status %d", what, resp.StatusCode)
					case cl.at != gone && got != cl.at:
						t.Fatalf("%s: client of %s moved to %s", what, cl.at, got)
					case cl.at == gone && got == gone:
						t.Fatalf("%s: client of %s still reached it", what, gone)
					case mode == "sticky" && cl.at != gone && len(set) != 0:
						t.Fatalf("%s: client of %s re-cookied: %q", what, cl.at, set)
					case mode == "sticky" && cl.at == gone && len(set) != 1:
						t.Fatalf("%s: client of %s moved to %s without a new cookie: %q", what, gone, got, set)
					}
				}
			}
			answer(2, 0, 1)
			check("reordered", "")
			answer(2, 0)
			check("b dropped", "b")
			if mode != "sticky" {
				answer(1, 2, 0)
				check("b back", "")
			}
		})
	}
}

// TestStickySameNameDropKeepsCookieOrder: a backend (a sluice
// behind sluice, or an app using the default name) answers with its own
// cookie of the affinity name first, then the app's cookies, two of one
// name. README: that cookie "is dropped and the session's sent instead",
// and a plain answer keeps the backend's field order
// (TestPlainHeadFieldOrderEndToEnd); for Set-Cookie the order is meaning:
// of two fields setting one cookie, the later wins in the browser. The
// drop (fasthttp's DelCookie) moves the last Set-Cookie into the dropped
// one's place, so sid=b now comes before sid=a and the browser keeps
// sid=a, not the sid=b the app set.
func TestStickySameNameDropKeepsCookieOrder(t *testing.T) {
	want := []string{"sid=a; Path=/", "other=1; Path=/", "sid=b; Path=/"}
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "aff=inner; Path=/")
		for _, v := range want {
			w.Header().Add("Set-Cookie", v)
		}
		w.Write([]byte("ok"))
	}
	bs := []*testBackend{startBackend(t, "a", h)}
	px := startProxy(t, r25StickyYAML("", bs[0].addr()))
	id := balancer.BackendID("p", bs[0].addr())
	for _, cookie := range []string{"", id} {
		raw := "GET / HTTP/1.1\r\nHost: h\r\n"
		if cookie != "" {
			raw += "Cookie: aff=" + cookie + "\r\n"
		}
		resp := r25StickyRaw(t, px.addr, raw+"\r\n")
		if resp.Header.Get("Content-Length") == "" {
			t.Fatalf("want a plain answer with Content-Length: %v", resp.Header)
		}
		var others []string
		for _, v := range resp.Header.Values("Set-Cookie") {
			if !strings.HasPrefix(v, "aff=") {
				others = append(others, v)
			}
		}
		if strings.Join(others, "\n") != strings.Join(want, "\n") {
			last := ""
			for _, ck := range resp.Cookies() {
				if ck.Name == "sid" {
					last = ck.Value
				}
			}
			t.Errorf("cookie %q: the backend's Set-Cookie fields came as %q, want %q (in order): a browser ends with sid=%s, the app set sid=b last", cookie, others, want, last)
		}
	}
}

// TestStickyPanicModeKeepsUnhealthySessions: README, sticky: an
// unhealthy backend loses its sessions "except in panic mode, where
// unhealthy backends are picked too and keep theirs"; out of panic mode
// (the one healthy backend enough) the session moves with a new cookie.
func TestStickyPanicModeKeepsUnhealthySessions(t *testing.T) {
	for _, tc := range []struct {
		threshold string
		keep      bool
	}{{"60%", true}, {"40%", false}} {
		t.Run(tc.threshold, func(t *testing.T) {
			a, z := r23NewBackend(t, "a"), r23NewBackend(t, "z")
			px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p:
    sticky: { cookie: aff }
    panic_threshold: %s
    backends: [{ address: %s }, { address: %s }]
    health_check: { path: /healthz, interval: 50ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }
`, tc.threshold, a.addr(), z.addr()))
			idZ := balancer.BackendID("p", z.addr())
			z.healthCode.Store(503)
			waitFor(t, "z unhealthy", 5*time.Second, func() bool { return !stateOf(t, px, z.addr()).Healthy })
			for range 10 {
				resp := r25StickyRaw(t, px.addr, "GET / HTTP/1.1\r\nHost: h\r\nCookie: aff="+idZ+"\r\n\r\n")
				be, set := resp.Header.Get("X-Backend"), r25StickySetCookies(resp, "aff")
				switch {
				case resp.StatusCode != 200:
					t.Fatalf("status %d", resp.StatusCode)
				case tc.keep && (be != "z" || len(set) != 0):
					t.Fatalf("panic mode: z's session went to %s with Set-Cookie %q, want z and none", be, set)
				case !tc.keep && (be != "a" || len(set) != 1):
					t.Fatalf("no panic: z's session went to %s with Set-Cookie %q, want a and a new cookie", be, set)
				}
			}
		})
	}
}
