package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"sluice/balancer"
)

// Load balancing through the proxy, found by review (retry target choice,
// rotation across rebuilds, sticky cookies, hash keys).

// TestRetryFallbackIgnoresWeights: when a heavy backend fails,
// retryTarget's 4 picks mostly land on it again (tried) and it falls back
// to "the least loaded of the rest, ties drawn evenly": weights (and slow
// start, which is a weight) are dropped exactly on the path that carries
// the failing backend's whole traffic. README (Retries): "weights, load
// and slow start hold for retries too".
//
// Found by review, fixed: pool [D weight 1000 (refusing), B weight 50, C weight 1], random,
// attempts 2. B and C should share the retries 50:1, so C should take
// about 2% of the requests (~6 of 300). Before the fix the fallback splits them
// evenly whenever the 4 picks all hit D ((1000/1051)^4 = 82% of
// retries), so C takes about 40% (~120 of 300), twenty times its weight.
func TestRetryFallbackIgnoresWeights(t *testing.T) {
	b := startBackend(t, "b", nil)
	cb := startBackend(t, "c", nil)
	px := startProxy(t, retryYAML("random", []string{freeAddr(t), b.addr(), cb.addr()}, []int{1000, 50, 1}, "retries: { attempts: 2 }\n"))
	c := testClient(t)
	const n = 300
	for i := range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
			t.Fatalf("request %d = %d, want 200", i, code)
		}
	}
	hb, hc := b.hits.Load(), cb.hits.Load()
	t.Logf("b (weight 50) took %d, c (weight 1) took %d", hb, hc)
	if hc > 30 {
		t.Errorf("weight-1 backend took %d of %d requests (b, weight 50, took %d); want about %d (1/51 of the retries): the retry fallback ignores weights", hc, n, hb, n/51)
	}
}

// TestRoundRobinRotationResetByRebuild: every snapshot rebuild
// builds every pool's picker afresh, and round robin starts each new one
// at a random point of its cycle. A rebuild happens on any health
// transition, ejection, admin call, DNS change, reload, and every 250 ms
// while any pool (not just this one) slow-starts a backend; each one
// throws this pool's rotation away although nothing in it changed.
//
// Found by review, fixed: pool rr = [a, b] round_robin; an admin weight change in another
// pool between requests. Expected: strict alternation a b a b (nginx
// keeps its rotation when an unrelated upstream changes); before: each
// request after a rebuild goes to a random backend, about half of them
// repeat the previous one.
func TestRoundRobinRotationResetByRebuild(t *testing.T) {
	a := startBackend(t, "a", nil)
	bb := startBackend(t, "b", nil)
	o := startBackend(t, "o", nil)
	yml := fmt.Sprintf(`
routes:
  - match: { path_prefix: /other }
    pool: other
  - pool: rr
pools:
  rr: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
  other: { algorithm: random, backends: [{ address: %s }] }
`, a.addr(), bb.addr(), o.addr())
	px := startProxy(t, yml)
	c := testClient(t)
	const n = 40
	repeats, prev := 0, ""
	for i := range n {
		code, from, _ := get(t, c, "http://"+px.addr+"/", nil)
		if code != 200 {
			t.Fatalf("request %d = %d", i, code)
		}
		if from == prev {
			repeats++
		}
		prev = from
		// An unrelated change in another pool: one snapshot rebuild.
		if err := px.ctrl.SetWeight(context.Background(), "other", o.addr(), uint32(1+i%2)); err != nil {
			t.Fatal(err)
		}
	}
	if repeats > 2 {
		t.Errorf("round robin over 2 equal backends sent %d of %d requests to the backend of the request before; want strict alternation (0): rebuilds for another pool restart the rotation at random", repeats, n-1)
	}
}

// TestStickyPoolsOwnCookies: two sticky pools behind one host (/app and
// /api) keep their sessions when each has its own cookie. With one name
// for both (two algorithm: sticky pools shared the default, Path=/) each
// pool found the other's id, picked afresh and overwrote the cookie, so a
// client that alternated lost affinity in both (found by review); config
// now refuses one name for two pools (TestStickyCookieShared).
func TestStickyPoolsOwnCookies(t *testing.T) {
	a1, a2 := startBackend(t, "a1", nil), startBackend(t, "a2", nil)
	p1, p2 := startBackend(t, "p1", nil), startBackend(t, "p2", nil)
	yml := fmt.Sprintf(`
routes:
  - match: { path_prefix: /app }
    pool: app
  - match: { path_prefix: /api }
    pool: api
pools:
  app: { algorithm: sticky, backends: [{ address: %s }, { address: %s }] }
  api: { algorithm: sticky, sticky: { cookie: api_affinity }, backends: [{ address: %s }, { address: %s }] }
`, a1.addr(), a2.addr(), p1.addr(), p2.addr())
	px := startProxy(t, yml)
	c := testClient(t)
	jar := map[string]string{} // what a browser keeps: one value per name (same path)
	do := func(path string) string {
		req, _ := http.NewRequest("GET", "http://"+px.addr+path, nil)
		for k, v := range jar {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			jar[ck.Name] = ck.Value
		}
		return resp.Header.Get("X-Backend")
	}
	firstApp, firstAPI := do("/app"), do("/api")
	changedApp, changedAPI := 0, 0
	for range 12 {
		if got := do("/app"); got != firstApp {
			changedApp++
		}
		if got := do("/api"); got != firstAPI {
			changedAPI++
		}
	}
	if changedApp > 0 || changedAPI > 0 {
		t.Errorf("alternating /app and /api, each pool with its own cookie: /app left its first backend %d of 12 times, /api %d of 12; want 0", changedApp, changedAPI)
	}
}

// sourceClient is an HTTP client whose connections come from the
// loopback address ip (127.0.0.0/8 is all local on Linux).
func sourceClient(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// hashPoolYAML is a pool p of alg with hash_key over n fresh backends.
func hashPoolYAML(t *testing.T, alg, hashKey string, n int) string {
	t.Helper()
	y := "routes:\n  - pool: p\npools:\n  p:\n    algorithm: " + alg + "\n    hash_key: \"" + hashKey + "\"\n    backends:\n"
	for i := range n {
		y += fmt.Sprintf("      - { address: %s }\n", startBackend(t, fmt.Sprintf("b%d", i), nil).addr())
	}
	return y
}

// TestHashHeaderXForwardedForSeesAppendedPeer: requestKey runs
// after prepareRequest, so hash_key: header:X-Forwarded-For hashes the
// list with sluice's own addition, the TCP peer's address, at its end.
// The usual reason to hash that header is a CDN or L4 balancer in front
// whose egress addresses vary: the same client then gets a different key
// through each of them. README: header:NAME hashes "the value of request
// header NAME" (nginx's hash $http_x_forwarded_for is the client's
// header too).
//
// Found by review, fixed: the same "X-Forwarded-For: 203.0.113.N" from four peers
// (127.0.0.1-4) should reach one backend, the one the picker gives
// HashString("203.0.113.N"); before: the key was "203.0.113.N, 127.0.0.x"
// and the peers are spread over the pool.
func TestHashHeaderXForwardedForSeesAppendedPeer(t *testing.T) {
	px := startProxy(t, hashPoolYAML(t, "ring_hash", "header:X-Forwarded-For", 8))
	pl := px.proxy.Current().pools["p"]
	peers := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	clients := make([]*http.Client, len(peers))
	for i, ip := range peers {
		clients[i] = sourceClient(t, ip)
	}
	split, wrong := 0, 0
	for u := range 6 {
		xff := fmt.Sprintf("203.0.113.%d", u+1)
		want := pl.targets[pl.pick(balancer.HashString(xff), 0)].backend.Addr
		seen := map[string]bool{}
		for _, c := range clients {
			code, from, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"X-Forwarded-For": xff})
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			seen[from] = true
			if from != "b"+fmt.Sprint(indexOfAddr(pl, want)) {
				wrong++
			}
		}
		if len(seen) > 1 {
			split++
		}
	}
	if split > 0 || wrong > 0 {
		t.Errorf("hash_key header:X-Forwarded-For: %d of 6 client addresses split over backends by the peer they came through, %d of 24 requests not on the backend of the header's value; want 0 and 0 (the key includes the peer address sluice appended)", split, wrong)
	}
}

// indexOfAddr returns the backend number (bN) of addr in pool pl, as
// hashPoolYAML named them in order.
func indexOfAddr(pl *pool, addr string) int {
	for i, up := range pl.targets {
		if up.backend.Addr == addr {
			return i
		}
	}
	return -1
}

// TestSourceIPHashesPeer: hash_key: source_ip hashes each
// client's own 4-byte address (not one address for everyone): peers
// spread, each lands where the picker puts its address. Holds.
func TestSourceIPHashesPeer(t *testing.T) {
	px := startProxy(t, hashPoolYAML(t, "maglev", "source_ip", 4))
	pl := px.proxy.Current().pools["p"]
	used := map[string]bool{}
	for i := 1; i <= 12; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		c := sourceClient(t, ip)
		want := indexOfAddr(pl, pl.targets[pl.pick(balancer.HashKey(net.ParseIP(ip).To4()), 0)].backend.Addr)
		for range 2 {
			_, from, _ := get(t, c, "http://"+px.addr+"/", nil)
			if from != fmt.Sprintf("b%d", want) {
				t.Errorf("client %s went to %s, want b%d", ip, from, want)
			}
			used[from] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("12 client addresses all went to %v, want a spread", used)
	}
}
