package proxy

// Routing review: where what sluice routes on (host normalised by
// normalizeHost, fasthttp's normalised ctx.Path()) and what the backend is
// sent (the request-target as received, the Host header) disagree.
//
// The cases marked "Found by review" failed before session 15's fixes
// (their comments describe the old behaviour and why it mattered); now a
// target whose dot segments the two sides would resolve differently, or
// that starts with "//", gets 400, as do an over-long Host and an
// absolute-form target with an empty host, and config refuses a
// path_prefix no decoded path can match. Tests marked "coverage" are
// corners that were checked and behave as the README says.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"sluice/config"
)

// poolRig is sluice in front of one raw backend per pool; each backend
// answers 200 with X-Pool: its name and records the raw request it got.
type poolRig struct {
	px    *testProxy
	pools map[string]*rawBackend
}

func startPoolRig(t *testing.T, routes string, names ...string) *poolRig {
	t.Helper()
	r := &poolRig{pools: map[string]*rawBackend{}}
	y := "routes:\n" + routes + "pools:\n"
	for _, n := range names {
		b := startRawBackend(t, "HTTP/1.1 200 OK\r\nX-Pool: "+n+"\r\nContent-Length: 0\r\n\r\n")
		r.pools[n] = b
		y += fmt.Sprintf("  %s: { algorithm: round_robin, backends: [{ address: %s }] }\n", n, b.ln.Addr())
	}
	r.px = startProxy(t, y)
	return r
}

// send sends raw on a fresh connection (raw should end in Connection:
// close or be HTTP/1.0) and returns the status line, the pool that
// answered (X-Pool), and the request line and raw head its backend got.
func (r *poolRig) send(t *testing.T, raw string) (status, pool, line, head string) {
	t.Helper()
	for _, b := range r.pools {
		b.mu.Lock()
		b.last = ""
		b.mu.Unlock()
	}
	out := rawWire(t, r.px.addr, raw)
	status, _, _ = strings.Cut(out, "\r\n")
	if i := strings.Index(out, "X-Pool: "); i >= 0 {
		pool, _, _ = strings.Cut(out[i+len("X-Pool: "):], "\r\n")
	}
	if b := r.pools[pool]; b != nil {
		head, _, _ = strings.Cut(b.got(), "\r\n\r\n")
		line, _, _ = strings.Cut(head, "\r\n")
	}
	return status, pool, line, head
}

// Found by review (handler.go:213 routes on ctx.Path(), README "Routing" promises
// "/x/../admin cannot slip past a /admin route" and that only backends
// that read paths unlike RFC 3986 (";" and "\") can resolve a target
// outside the matched prefix). The reverse direction is open to a plain
// Go net/http backend: fasthttp decodes %2e and %2f before it removes dot
// segments, so /admin/%2e%2e/y is routed as /y to the catch-all pool,
// while the target goes upstream byte for byte and Go's ServeMux (old
// and 1.22 patterns alike) does not treat %2e%2e or %2f as a dot segment
// or separator: it runs its /admin/ handler. A config that sends /admin/
// to a guarded pool (an auth gateway, a deny backend) and / to the app is
// bypassed. (RFC 3986 §2.3/§6.2.2.2 makes %2E the same as ".", but %2F is
// reserved: an RFC-conforming backend may keep x%2f..%2f..%2fy as one
// segment inside /admin/.) Envoy's normalize_path forwards the path it
// routed on; its path_with_escaped_slashes_action can reject %2F. sluice
// should forward what it routed on, or refuse a target whose
// normalisation removed encoded dot segments or decoded an encoded slash.
func TestRoutingEncodedDotSegmentsLeaveGuardedPrefix(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ADMIN SECRET") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "public "+r.URL.Path) })
	app := startBackend(t, "app", mux.ServeHTTP)
	px := guardedAdminProxy(t, app)
	for _, target := range []string{
		"/admin/%2e%2e/y",
		"/admin/%2E%2E/y",
		"/admin/.%2e/y",
		"/admin/%2e./y",
		"/admin/x%2f..%2f..%2fy",
	} {
		t.Run(target, func(t *testing.T) {
			out := rawWire(t, px.addr, "GET "+target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			if strings.Contains(out, "ADMIN SECRET") {
				status, _, _ := strings.Cut(out, "\r\n")
				t.Errorf("GET %s: %s from the app pool's /admin/ handler; the /admin/ route (guard pool) was bypassed", target, status)
			}
		})
	}
}

// Coverage: the unencoded and the "into the prefix" forms are fine with
// that Go backend: /x/../admin/y and its encoded spellings route to the
// guarded pool, and a plain /admin/../y reaches the app, whose ServeMux
// redirects it to /y rather than serve /admin/ (a backend that does not
// remove dot segments at all, as Express's router, would: sluice passes
// the original target, as nginx's proxy_pass without a URI does).
func TestRoutingDotSegmentsCoverage(t *testing.T) {
	r := startPoolRig(t, `  - { match: { path_prefix: /admin/ }, pool: admin }
  - { pool: app }
`, "admin", "app")
	for _, tt := range []struct{ target, pool string }{
		{"/x/../admin/y", "admin"},
		{"/x/%2e%2e/admin/y", ""}, // encoded dot segments: refused either way
		{"/x/.%2e/admin/y", ""},
		{"/x/..%2fadmin/y", ""}, // a dot segment beside an encoded slash
		{"/admin/./y", "admin"},
		{"//admin/y", ""}, // fasthttp may read "//" as an authority: refused
		{"/admin//y", "admin"},
		{"/../admin/y", "admin"},
		{"/%61dmin/y", "admin"},  // %61 is "a": decoded before matching
		{"/%2561dmin/y", "app"},  // decoded once only, as the backend does
		{"/admin%2fy", "admin"},  // %2f decoded: a separator for routing
		{"/admin/../y", "app"},   // resolved outside the prefix
		{"/admin;x/y", "app"},    // path parameters: README's caveat
		{"/admin\\..\\y", "app"}, // backslash is no separator: README's caveat
		{"/ADMIN/y", "app"},      // prefixes are case-sensitive, as nginx and Envoy
		{"/admin%00/y", "app"},   // NUL decoded, matched as a byte
		{"/y?/admin/", "app"},    // the query never takes part
		{"/y?x=/../admin/", "app"},
	} {
		status, pool, line, _ := r.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if tt.pool == "" {
			if status != "HTTP/1.1 400 Bad Request" || pool != "" {
				t.Errorf("GET %s: %q from %q; want 400 from sluice", tt.target, status, pool)
			}
			continue
		}
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || line != "GET "+tt.target+" HTTP/1.1" {
			t.Errorf("GET %s: %q from %q, upstream %q; want 200 from %q, target as sent", tt.target, status, pool, line, tt.pool)
		}
	}
	// With Go's ServeMux behind, the raw /admin/../y does not reach /admin/.
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ADMIN SECRET") })
	app := startBackend(t, "app", mux.ServeHTTP)
	px := startProxy(t, "routes:\n  - { match: { path_prefix: /admin/ }, pool: guard }\n  - { pool: app }\npools:\n"+
		"  guard: { algorithm: round_robin, backends: [{ address: 127.0.0.1:1 }] }\n"+
		"  app: { algorithm: round_robin, backends: [{ address: "+app.addr()+" }] }\n")
	if out := rawWire(t, px.addr, "GET /admin/../y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); strings.Contains(out, "ADMIN SECRET") {
		t.Errorf("GET /admin/../y reached the app's /admin/ handler")
	}
}

// Found by review (handler.go:540, checkTarget, and targetHost at :561): a target that
// starts with "//" is let through as origin form, but fasthttp's URI
// parser takes it as a network-path reference ("//authority/path") when
// the target holds "://" anywhere (the query included) or the request has
// no Host (HTTP/1.0). Then ctx.Path() is the path after the first
// segment, and Request.Write, which rebuilds the target from the parsed
// URI, sends that: GET //admin/x?u=http://y is routed as /x to the
// catch-all pool and goes upstream as GET /x?u=..., though GET //admin/x
// is routed to /admin/ and forwarded as sent. README "Forwarding"
// promises the request-target "byte for byte". A filter in front of
// sluice that vetted //evil/admin/x?u=http:// as a path under /evil/ has
// sluice send /admin/x. A query that carries a URL (?next=http://...) is
// common; a "//" first segment comes from a base URL joined with a
// leading-slash path.
func TestRoutingNetworkPathTargetLosesFirstSegment(t *testing.T) {
	r := startPoolRig(t, `  - { match: { path_prefix: /admin/ }, pool: admin }
  - { pool: app }
`, "admin", "app")
	for _, tt := range []struct{ name, raw, target string }{
		{"URL in the query", "GET //admin/x?next=http://y/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "//admin/x?next=http://y/"},
		{"URL in the path", "GET //admin/x/http://y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "//admin/x/http://y"},
		{"HTTP/1.0 without Host", "GET //admin/x HTTP/1.0\r\n\r\n", "//admin/x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, pool, line, _ := r.send(t, tt.raw)
			if status != "HTTP/1.1 400 Bad Request" || pool != "" {
				t.Errorf("%q: %q from %q, upstream %q; want 400 from sluice: a target starting with // is refused",
					strings.SplitN(tt.raw, "\r\n", 2)[0], status, pool, line)
			}
		})
	}
}

// Found by review (same cause, handler.go:540): checkTarget refuses userinfo in an
// absolute-form target because "fasthttp would turn [it] into an
// Authorization header", but a "//user:pw@host/..." target passes as
// origin form, and fasthttp then does exactly that: the backend gets
// Authorization: Basic dXNlcjpwdw== that the client never sent as a
// header. An edge in front of sluice that strips or checks client
// Authorization headers never sees this one; the path it saw goes
// upstream without the authority either.
func TestRoutingNetworkPathUserinfoBecomesAuthorization(t *testing.T) {
	r := startPoolRig(t, "  - { pool: app }\n", "app")
	for _, raw := range []string{
		"GET //user:pw@h/x?u=http://y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET //user:pw@h/x HTTP/1.0\r\n\r\n",
	} {
		status, _, _, head := r.send(t, raw)
		if strings.Contains(strings.ToLower(head), "\r\nauthorization:") {
			t.Errorf("%q: %q, and the backend got an Authorization header made from the target:\n%s",
				strings.SplitN(raw, "\r\n", 2)[0], status, head)
		}
	}
}

// Found by review (routes.go:138, normalizeHost): a Host longer than the 256-byte
// scratch buffer is returned as it came, not lower-cased, so its
// upper-case spelling misses the wildcard route its lower-case spelling
// takes and lands on the catch-all pool. README: "Hosts are compared
// lower-cased". (Such a name is over DNS's 253 bytes; refusing it with
// 400, or lower-casing in place, would both do.)
func TestRoutingLongHostNotLowerCased(t *testing.T) {
	r := startPoolRig(t, `  - { match: { host: "*.example.com" }, pool: wild }
  - { pool: app }
`, "wild", "app")
	label := strings.Repeat("a", 63) + "."
	long := strings.Repeat(label, 4) + "example.com" // 267 bytes
	_, lower, _, _ := r.send(t, "GET / HTTP/1.1\r\nHost: "+long+"\r\nConnection: close\r\n\r\n")
	status, upper, _, _ := r.send(t, "GET / HTTP/1.1\r\nHost: "+strings.ToUpper(long)+"\r\nConnection: close\r\n\r\n")
	if upper != lower && !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Errorf("a %d-byte Host goes to %q lower-case but to %q upper-case (%q)", len(long), lower, upper, status)
	}
}

// Found by review (handler.go:552, checkTarget): "http://:80/x" has an authority but
// no host; RFC 9110 §4.2.1 says a recipient MUST reject an http URI with
// an empty host, and README "Error codes" lists "an absolute-form target
// ... without a host" as 400. sluice routes it as a request without host
// (the catch-all route, whatever the Host header said) and sends
// Host: :80 upstream.
func TestRoutingAbsoluteFormEmptyHostName(t *testing.T) {
	r := startPoolRig(t, `  - { match: { host: api.example.com }, pool: api }
  - { pool: app }
`, "api", "app")
	status, pool, _, head := r.send(t, "GET http://:80/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Errorf("GET http://:80/x: %q from %q, want 400; upstream head:\n%s", status, pool, head)
	}
}

// Found by review (config/validate.go route(): path_prefix is only checked to start
// with "/"; proxy/control.go compiles it as written): paths are matched
// after %-decoding and dot/slash resolution, but the prefix is not
// normalised, so a prefix written as it appears in a URL
// (/caf%C3%A9/, /a%2Fb/) or holding "//", a dot segment or "?" can never
// match what a client sends with it, and only matches a double-encoded
// spelling. The traffic silently goes to a less specific route. The
// prefix should be normalised the same way, or refused.
func TestRoutingPathPrefixNotNormalised(t *testing.T) {
	for _, tt := range []struct{ prefix, target string }{
		{"/caf%C3%A9/", "/caf%C3%A9/menu"},
		{"/a%2Fb/", "/a%2Fb/c"},
		{"//double/", "//double/c"},
		{"/search?q=", "/search?q=x"},
	} {
		t.Run(tt.prefix, func(t *testing.T) {
			routes := fmt.Sprintf("  - { match: { path_prefix: %q }, pool: special }\n  - { pool: app }\n", tt.prefix)
			y := "routes:\n" + routes + "pools:\n  special: { backends: [{ address: 127.0.0.1:1 }] }\n  app: { backends: [{ address: 127.0.0.1:2 }] }\n"
			if _, err := config.Parse("t.yaml", []byte(y)); err != nil {
				return // refused: fine
			}
			r := startPoolRig(t, routes, "special", "app")
			status, pool, _, _ := r.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			if pool != "special" {
				t.Errorf("path_prefix %q accepted, but GET %s goes to %q (%q)", tt.prefix, tt.target, pool, status)
			}
		})
	}
}

// Coverage: host normalisation, Host header corners and precedence.
func TestRoutingHostCoverage(t *testing.T) {
	r := startPoolRig(t, `  - { pool: app }
  - { match: { path_prefix: /static/ }, pool: static }
  - { match: { host: "*.example.com" }, pool: wild }
  - { match: { host: "*.eu.example.com" }, pool: euwild }
  - { match: { host: api.example.com, path_prefix: /v2/ }, pool: api }
  - { match: { host: under_score.example.com }, pool: under }
`, "app", "static", "wild", "euwild", "api", "under")
	for _, tt := range []struct{ name, host, target, pool, sentHost string }{
		{"exact", "api.example.com", "/v2/x", "api", "api.example.com"},
		{"case", "API.Example.COM", "/v2/x", "api", "API.Example.COM"},
		{"port", "api.example.com:8443", "/v2/x", "api", "api.example.com:8443"},
		{"trailing dot and port", "api.example.com.:80", "/v2/x", "api", "api.example.com.:80"},
		{"empty port", "api.example.com:", "/v2/x", "api", "api.example.com:"},
		{"exact host, other path: next group", "api.example.com", "/v1/x", "wild", "api.example.com"},
		{"longer wildcard first", "a.eu.example.com", "/", "euwild", "a.eu.example.com"},
		{"wildcard, several labels", "a.b.example.com", "/", "wild", "a.b.example.com"},
		{"wildcard needs a label", "example.com", "/", "app", "example.com"},
		{"wildcard needs a dot boundary", "badexample.com", "/", "app", "badexample.com"},
		{"no host route, longest prefix", "other.org", "/static/a", "static", "other.org"},
		{"prefix is per byte, not per segment", "other.org", "/static", "app", "other.org"},
		{"underscore", "under_score.example.com", "/", "under", "under_score.example.com"},
		{"IPv6 literal", "[::1]:80", "/", "app", "[::1]:80"},
		{"IDN is not mapped", "xn--bcher-kva.example.com", "/", "wild", "xn--bcher-kva.example.com"},
	} {
		status, pool, line, head := r.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || line != "GET "+tt.target+" HTTP/1.1" ||
			!strings.Contains(head, "\r\nHost: "+tt.sentHost+"\r\n") {
			t.Errorf("%s: %q from %q, upstream %q; want 200 from %q, Host %q", tt.name, status, pool, line, tt.pool, tt.sentHost)
		}
	}
	// Refused before routing.
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: api.example.com\r\nHost: other.org\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: u:p@api.example.com\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.example.com:evil\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: evil:api.example.com\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
		"GET http://u:p@api.example.com/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /static/a#x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET static/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /static/\x01 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		// Its path would go upstream as "//static/a", which a backend
		// may read as an authority, as for an origin-form "//" target.
		"GET http://other.org//static/a HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
	} {
		if status, pool, _, _ := r.send(t, raw); pool != "" || !(strings.HasPrefix(status, "HTTP/1.1 400") || strings.HasPrefix(status, "HTTP/1.1 431")) {
			t.Errorf("%.60q: %q from %q, want 400/431 and no backend", raw, status, pool)
		}
	}
	// Absolute form: the target's host routes and is sent; the path as parsed.
	for _, tt := range []struct{ raw, pool, line, host string }{
		{"GET http://API.example.com/v2/x HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n", "api", "GET /v2/x HTTP/1.1", "API.example.com"},
		{"GET http://api.example.com?/v2/ HTTP/1.1\r\nHost: other.org\r\nConnection: close\r\n\r\n", "wild", "GET /?/v2/ HTTP/1.1", "api.example.com"},
		{"GET http://a.eu.example.com/ HTTP/1.0\r\n\r\n", "euwild", "GET / HTTP/1.1", "a.eu.example.com"},
	} {
		status, pool, line, head := r.send(t, tt.raw)
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || line != tt.line || !strings.Contains(head, "\r\nHost: "+tt.host+"\r\n") {
			t.Errorf("%.50q: %q from %q, upstream %q; want %q, %q, Host %q", tt.raw, status, pool, line, tt.pool, tt.line, tt.host)
		}
	}
}

// guardedAdminProxy serves a proxy that routes /admin/ to a guard backend
// (403 for everything) and the rest to app.
func guardedAdminProxy(t *testing.T, app *testBackend) *testProxy {
	t.Helper()
	guard := startBackend(t, "guard", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	})
	return startProxy(t, fmt.Sprintf(`
routes:
  - { match: { path_prefix: /admin/ }, pool: guard }
  - { pool: app }
pools:
  guard: { algorithm: round_robin, backends: [{ address: %s }] }
  app: { algorithm: round_robin, backends: [{ address: %s }] }
`, guard.addr(), app.addr()))
}
