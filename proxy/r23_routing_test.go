package proxy

// Review 23, routing: end-to-end checks of what README "Routing" states
// that no other test pins down in one place. All passed when written
// (coverage, kept as regression tests).

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// Coverage: specificity beats file order (exact host, then wildcard, then
// no host; longest prefix within a group, a group without a matching
// prefix passing the request on), path_prefix is a byte prefix of the
// decoded path (/api, /api/, /apix), the query never routes, and a
// request no route takes gets 404 with sluice's own body.
func TestRoutingSpecificityEndToEnd(t *testing.T) {
	// Listed least specific first on purpose.
	r := startPoolRig(t, `  - { match: { path_prefix: /api }, pool: api }
  - { match: { path_prefix: /api/ }, pool: apislash }
  - { match: { path_prefix: /v3/x/ }, pool: any3 }
  - { match: { host: "*.example.com", path_prefix: /v3/ }, pool: wild3 }
  - { match: { host: api.example.com }, pool: exact }
  - { match: { host: api.example.com, path_prefix: /v2/ }, pool: v2 }
`, "api", "apislash", "any3", "wild3", "exact", "v2")
	for _, tt := range []struct{ host, target, pool string }{
		{"h", "/api", "api"},
		{"h", "/apix", "api"},
		{"h", "/api/", "apislash"},
		{"h", "/%61pi/x", "apislash"}, // decoded before matching, forwarded as sent
		{"h", "/api?x=/api/", "api"},  // the query takes no part
		{"h", "/x/../api/y", "apislash"},
		{"api.example.com", "/v2/a", "v2"},
		{"API.EXAMPLE.COM.:8080", "/v2/a", "v2"},
		{"api.example.com", "/v3/x/y", "exact"}, // exact group's "/" beats longer prefixes elsewhere
		{"a.example.com", "/v3/x/y", "wild3"},   // wildcard beats a longer prefix without host
		{"a.example.com", "/v4/", ""},           // no group takes it: 404
		{"other.org", "/v3/x/y", "any3"},
		{"[::1]:80", "/api/", "apislash"},
	} {
		status, pool, line, _ := r.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
		if tt.pool == "" {
			if status != "HTTP/1.1 404 Not Found" || pool != "" {
				t.Errorf("Host %s, GET %s: %q from %q, want 404 from sluice", tt.host, tt.target, status, pool)
			}
			continue
		}
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || line != "GET "+tt.target+" HTTP/1.1" {
			t.Errorf("Host %s, GET %s: %q from %q, upstream %q; want 200 from %q, target as sent", tt.host, tt.target, status, pool, line, tt.pool)
		}
	}
	out := rawWire(t, r.px.addr, "GET /nothing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 404 ") || !strings.HasSuffix(out, "\r\n\r\n404 no route for this host and path\n") {
		t.Errorf("no route: %q", out)
	}
}

// Coverage: a request retried on another backend (the first read it and
// closed without answering) goes there with the same request-target,
// byte for byte: escapes, dot segments, an empty query, a query fasthttp
// would re-encode, an absolute-form target in origin form, "*".
func TestRoutingRetryKeepsTarget(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{} // backend address -> request lines
	backend := func(answer bool) net.Listener {
		return serveRaw(t, func(c net.Conn) {
			var rec bytes.Buffer
			br := bufio.NewReader(io.TeeReader(c, &rec))
			for {
				rec.Reset()
				var req fasthttp.Request
				if err := req.Read(br); err != nil {
					return
				}
				line, _, _ := strings.Cut(rec.String(), "\r\n")
				mu.Lock()
				got[c.LocalAddr().String()] = append(got[c.LocalAddr().String()], line)
				mu.Unlock()
				if !answer {
					return // read, then closed: a reset for the proxy
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
					return
				}
			}
		})
	}
	bad, good := backend(false), backend(true)
	px := startProxy(t, "routes:\n  - { pool: p }\npools:\n  p: { algorithm: round_robin, backends: [{ address: "+
		bad.Addr().String()+" }, { address: "+good.Addr().String()+" }] }\n")
	for _, tt := range []struct{ method, target, sent string }{
		{"GET", "/%61dmin/./y?", "/%61dmin/./y?"},
		{"GET", "/a/b/../c?x=%20+y&&z=%zz", "/a/b/../c?x=%20+y&&z=%zz"},
		{"GET", "http://h/%61/./b?", "/%61/./b?"},
		{"GET", "http://h?q", "/?q"},
		{"OPTIONS", "*", "*"},
	} {
		mu.Lock()
		clear(got)
		mu.Unlock()
		// Round robin: two requests, so that one starts on the bad backend.
		for range 2 {
			out := rawWire(t, px.addr, tt.method+" "+tt.target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
				st, _, _ := strings.Cut(out, "\r\n")
				t.Errorf("%s %s: %q, want 200 after a retry", tt.method, tt.target, st)
			}
		}
		want := tt.method + " " + tt.sent + " HTTP/1.1"
		mu.Lock()
		nBad, nGood := len(got[bad.Addr().String()]), len(got[good.Addr().String()])
		for addr, lines := range got {
			for _, l := range lines {
				if l != want {
					t.Errorf("%s %s: backend %s got %q, want %q", tt.method, tt.target, addr, l, want)
				}
			}
		}
		mu.Unlock()
		if nBad != 1 || nGood != 2 {
			t.Errorf("%s %s: bad backend got %d, good %d requests; want 1 and 2 (one retried)", tt.method, tt.target, nBad, nGood)
		}
	}
}
