package proxy

// Routing against forwarding: what sluice routes on (normalizeHost of the
// Host, fasthttp's normalised ctx.Path()) against what the backend is sent
// (the Host and the request-target as received).

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// fasthttp's normalizePath (which ctx.Path(), and so the router,
// uses) merges repeated slashes *before* it removes dot segments, so in
// "/admin//../y" the ".." removes "admin" and the request is routed as
// "/y" to the catch-all pool. RFC 3986 §5.2.4 (remove_dot_segments) keeps
// the empty segment between the two slashes, and ".." removes that one:
// a backend that resolves the target it is sent (byte for byte, README
// "Forwarding") per RFC 3986 -- Go's url.ResolveReference, the WHATWG URL
// parser of Node and browsers, Envoy's normalize_path without
// merge_slashes, Jetty -- reads "/admin/y" and runs its /admin/ handler.
// A config that sends /admin/ to a guarded pool and / to the app is
// bypassed, exactly as with "/admin/%2e%2e/y", which session 15 fixed
// with a 400 (README "Routing": "Where the two could disagree, sluice
// refuses the request with 400"). checkPath only looks at targets that
// hold a '%', so a plain "//" before a ".." segment passes.
// It gets 400 (found by review).
func TestEmptySegmentBeforeDotDotRefused(t *testing.T) {
	base, _ := url.Parse("http://backend/")
	app := startBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		// Resolve the path as RFC 3986 §5.2 does (Go's documented
		// behaviour of ResolveReference), then route on it.
		p := base.ResolveReference(&url.URL{Path: r.URL.Path}).Path
		if strings.HasPrefix(p, "/admin/") {
			fmt.Fprint(w, "ADMIN SECRET")
			return
		}
		fmt.Fprint(w, "public "+p)
	})
	px := guardedAdminProxy(t, app)
	for _, target := range []string{
		"/admin//../y",
		"/admin/x//../../y",
		"/admin/.//../y",
		"/admin//..",
		"/admin//x/../../y",    // the second ".." removes the empty segment
		"http://h/admin//../y", // absolute form: the same path check
	} {
		t.Run(target, func(t *testing.T) {
			out := rawWire(t, px.addr, "GET "+target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			status, _, _ := strings.Cut(out, "\r\n")
			if !strings.HasPrefix(status, "HTTP/1.1 400") {
				t.Errorf("GET %s: %s, want 400", target, status)
			}
			if strings.Contains(out, "ADMIN SECRET") {
				t.Errorf("GET %s: %s from the app pool's /admin/ handler; the /admin/ route (guard pool) was bypassed", target, status)
			}
		})
	}
}

// An HTTP/1.1 Host whose host part is empty (":80", ".", ".:80")
// is taken: normalizeHost makes it "", the request is routed as one
// without Host (the catch-all route, meant for HTTP/1.0 requests) and
// goes upstream with that Host and X-Forwarded-Host. RFC 9110 §4.2.1: an
// http URI with an empty host is invalid and a recipient MUST reject it;
// RFC 9112 §3.2: a request without Host, or with an invalid Host value,
// MUST get 400. nginx answers 400 "client sent invalid host header" for
// each (ngx_http_validate_host: host_len 0). sluice refuses the same
// authority in an absolute-form target ("http://:80/x", README "Error
// codes": "an absolute-form target with an empty host"; fixed in session
// 16, TestRoutingAbsoluteFormEmptyHostName) and an empty "Host:", but not
// these: they get 400, nothing upstream (found by review).
func TestHostWithoutHostNameRefused(t *testing.T) {
	r := startPoolRig(t, `  - { match: { host: api.example.com }, pool: api }
  - { pool: app }
`, "api", "app")
	for _, host := range []string{":80", ".", ".:80", ":"} {
		t.Run(host, func(t *testing.T) {
			status, pool, _, head := r.send(t, "GET /x HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(status, "HTTP/1.1 400") || pool != "" {
				t.Errorf("Host %q: %q from %q, want 400 and no backend; upstream head:\n%s", host, status, pool, head)
			}
		})
	}
	// The absolute-form spelling of the same authority is refused already.
	for _, target := range []string{"http://:80/x", "http://./x", "http://.:80/x"} {
		if status, pool, _, _ := r.send(t, "GET "+target+" HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(status, "HTTP/1.1 400") || pool != "" {
			t.Errorf("GET %s: %q from %q, want 400", target, status, pool)
		}
	}
}

// Corners that behave as the README says.
func TestRoutingReviewCorners(t *testing.T) {
	r := startPoolRig(t, `  - { match: { path_prefix: /admin/ }, pool: admin }
  - { pool: app }
`, "admin", "app")
	for _, tt := range []struct{ name, raw, status, pool, line string }{
		{"encoded ? is no dot segment on either side", "GET /admin/x/..%3f/../.. HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK", "admin", "GET /admin/x/..%3f/../.. HTTP/1.1"},
		{"dot segment in the query only", "GET /x?a=/../admin/%2e%2e HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK", "app", "GET /x?a=/../admin/%2e%2e HTTP/1.1"},
		{"./ before //: into the prefix", "GET /.//admin/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK", "admin", "GET /.//admin/x HTTP/1.1"},
	} {
		status, pool, line, _ := r.send(t, tt.raw)
		if status != tt.status || pool != tt.pool || line != tt.line {
			t.Errorf("%s: %q from %q, upstream %q; want %q from %q, %q", tt.name, status, pool, line, tt.status, tt.pool, tt.line)
		}
	}
	// Connection naming the forwarding headers strips only the client's.
	_, _, _, head := r.send(t, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n\r\n")
	for _, want := range []string{"\r\nX-Forwarded-For: 127.0.0.1\r\n", "\r\nX-Forwarded-Host: h\r\n", "\r\nX-Forwarded-Proto: http\r\n"} {
		if !strings.Contains(head+"\r\n", want) {
			t.Errorf("upstream head lacks %q:\n%s", want, head)
		}
	}
	if strings.Contains(head, "6.6.6.6") || strings.Contains(head, "evil") || strings.Contains(head, "https") {
		t.Errorf("a client value went upstream:\n%s", head)
	}
	// HTTP/1.0 keep-alive: the pipelined second request is routed on its own.
	out := rawWire(t, r.px.addr, "POST /x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabcGET /admin/y HTTP/1.0\r\n\r\n")
	if got := strings.Count(out, "X-Pool: app\r\n"); got != 1 || strings.Count(out, "X-Pool: admin\r\n") != 1 {
		t.Errorf("HTTP/1.0 keep-alive pair: want one answer from app, then one from admin; got:\n%s", out)
	}
}

// FuzzCheckPathAgreesWithRFC3986: a path of '/', '.', 'a' and 'b' that
// checkPath lets through is routed on what a backend that resolves it by
// RFC 3986 §5.2.4 (then merges slashes, as nginx does) reads: fasthttp's
// normalisation, which sluice routes on, and the RFC's agree on it.
func FuzzCheckPathAgreesWithRFC3986(f *testing.F) {
	for _, s := range []string{"/admin//../y", "/a/./b", "/a//b/../c", "/../a", "/a/b/..", "/a//x/../../y"} {
		f.Add([]byte(s))
	}
	alphabet := []byte("/.ab")
	f.Fuzz(func(t *testing.T, in []byte) {
		p := make([]byte, 0, len(in)+1)
		p = append(p, '/')
		for _, c := range in {
			p = append(p, alphabet[c%4])
		}
		if code, _ := checkPath(p); code != 0 {
			return
		}
		var u fasthttp.URI
		u.SetPathBytes(p)
		routed := string(u.Path())
		backend := mergeSlashes(removeDotSegments(string(p)))
		if routed != backend {
			t.Errorf("path %q passed: routed as %q, an RFC 3986 backend reads %q", p, routed, backend)
		}
	})
}

// removeDotSegments is RFC 3986 §5.2.4's algorithm, as written there.
func removeDotSegments(in string) string {
	var out []string // segments, each with its leading "/"
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			i := strings.IndexByte(in[1:], '/')
			if i < 0 {
				out, in = append(out, in), ""
			} else {
				out, in = append(out, in[:i+1]), in[i+1:]
			}
		}
	}
	return strings.Join(out, "")
}

// mergeSlashes turns each run of '/' into one.
func mergeSlashes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '/' && i > 0 && s[i-1] == '/' {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
