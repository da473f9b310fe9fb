package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/config"
)

func TestRouting(t *testing.T) {
	backends := map[string]*testBackend{}
	for _, n := range []string{"api", "apiv2", "wild", "deepwild", "web", "static"} {
		backends[n] = startBackend(t, n, nil)
	}
	// Routes listed least specific first: the order must not matter.
	yml := `
routes:
  - match: { path_prefix: / }
    pool: web
  - match: { path_prefix: /static/ }
    pool: static
  - match: { host: "*.example.com" }
    pool: wild
  - match: { host: "*.eu.example.com" }
    pool: deepwild
  - match: { host: api.example.com }
    pool: api
  - match: { host: api.example.com, path_prefix: /v2/ }
    pool: apiv2
pools:
`
	for _, n := range []string{"api", "apiv2", "wild", "deepwild", "web", "static"} {
		yml += fmt.Sprintf("  %s:\n    algorithm: round_robin\n    backends: [{ address: %s }]\n", n, backends[n].addr())
	}
	px := startProxy(t, yml)
	c := testClient(t)
	tests := []struct {
		name, host, path, want string
	}{
		{"exact host", "api.example.com", "/v1/x", "api"},
		{"exact host longer prefix", "api.example.com", "/v2/x", "apiv2"},
		{"exact host with port and case", "API.Example.com:8080", "/v2/", "apiv2"},
		{"wildcard", "shop.example.com", "/", "wild"},
		{"longer wildcard wins", "shop.eu.example.com", "/", "deepwild"},
		{"wildcard needs a label", "example.com", "/", "web"},
		{"no host", "other.org", "/x", "web"},
		{"no host longer prefix", "other.org", "/static/app.js", "static"},
		{"path is normalised before matching", "other.org", "/x/../static/a", "static"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got, _ := get(t, c, "http://"+px.addr+tt.path, map[string]string{"Host": tt.host})
			if code != 200 || got != tt.want {
				t.Errorf("GET %s%s = %d from %q, want 200 from %q", tt.host, tt.path, code, got, tt.want)
			}
		})
	}
}

// TestAbsoluteFormTargetHostWins: with an absolute-form target the
// target's host, not the Host header, picks the route and is the Host the
// backend gets (RFC 9112 §3.2.2), with X-Forwarded-Host to match.
func TestAbsoluteFormTargetHostWins(t *testing.T) {
	api, web := startBackend(t, "api", nil), startBackend(t, "web", nil)
	px := startProxy(t, fmt.Sprintf(`
routes:
  - match: { host: api.example.com }
    pool: api
  - pool: web
pools:
  api: { algorithm: round_robin, backends: [{ address: %s }] }
  web: { algorithm: round_robin, backends: [{ address: %s }] }
`, api.addr(), web.addr()))
	tests := []struct {
		name, raw, want, wantHost string
	}{
		{"target host over Host", "GET http://api.example.com/x HTTP/1.1\r\nHost: other.org\r\n\r\n", "api", "api.example.com"},
		{"scheme and host in any case, with a port", "GET HTTP://API.Example.com:8080/x?q=1 HTTP/1.1\r\nHost: other.org\r\n\r\n", "api", "API.Example.com:8080"},
		{"no path", "GET http://api.example.com HTTP/1.1\r\nHost: other.org\r\n\r\n", "api", "api.example.com"},
		{"other target host over a matching Host", "GET http://other.org/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "web", "other.org"},
		{"origin form: Host decides", "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api", "api.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, px.addr, tt.raw)
			if got := resp.Header.Get("X-Backend"); resp.StatusCode != 200 || got != tt.want {
				t.Fatalf("status %d from %q, want 200 from %q", resp.StatusCode, got, tt.want)
			}
			b := map[string]*testBackend{"api": api, "web": web}[tt.want]
			b.mu.Lock()
			host, xfh, uri := b.last.Host, b.last.Header.Get("X-Forwarded-Host"), b.last.RequestURI
			b.mu.Unlock()
			if host != tt.wantHost || xfh != tt.wantHost || uri[0] != '/' {
				t.Errorf("backend got Host %q, X-Forwarded-Host %q, target %q; want %q, %q and origin form", host, xfh, uri, tt.wantHost, tt.wantHost)
			}
		})
	}
	if code := rawStatus(t, px.addr, "GET http:///x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"); code != 400 {
		t.Errorf("absolute-form target without a host = %d, want 400", code)
	}
}

func poolYAML(algorithm string, backends []*testBackend, weights []int) string {
	y := "routes:\n  - pool: p\npools:\n  p:\n    algorithm: " + algorithm + "\n    backends:\n"
	for i, b := range backends {
		w := 1
		if weights != nil {
			w = weights[i]
		}
		y += fmt.Sprintf("      - { address: %s, weight: %d }\n", b.addr(), w)
	}
	return y
}

func TestRoundRobinSpread(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		total   int
		want    []int64
	}{
		{"equal", []int{1, 1, 1}, 300, []int64{100, 100, 100}},
		{"3 to 1", []int{3, 1}, 400, []int64{300, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []*testBackend
			for i := range tt.weights {
				bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i), nil))
			}
			px := startProxy(t, poolYAML("round_robin", bs, tt.weights))
			c := testClient(t)
			for range tt.total {
				if code, _, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 {
					t.Fatalf("status %d, want 200", code)
				}
			}
			for i, b := range bs {
				if got := b.hits.Load(); got != tt.want[i] {
					t.Errorf("backend %d hits = %d, want %d", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		// Hop-by-hop headers the proxy must not pass back to the client.
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Kept", "yes")
	})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))

	// A raw request, so the exact headers sent are under the test's control.
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /path?q=1&b=%20x HTTP/1.1\r\nHost: shop.test\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"Connection: keep-alive, X-Drop-Me\r\n"+
		"X-Drop-Me: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: websocket\r\n"+
		"X-Request-Id: req-42\r\nX-Custom: kept\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	r, _ := b.lastRequest()
	if r == nil {
		t.Fatal("backend got no request")
	}
	checks := []struct{ header, want string }{
		{"X-Forwarded-For", "203.0.113.9, 127.0.0.1"},
		{"X-Forwarded-Proto", "http"},
		{"X-Forwarded-Host", "shop.test"},
		{"X-Request-Id", "req-42"},
		{"X-Custom", "kept"},
		{"X-Drop-Me", ""},
		{"Keep-Alive", ""},
		{"Proxy-Connection", ""},
		{"Te", ""},
		{"Proxy-Authorization", ""},
		{"Upgrade", ""},
	}
	for _, c := range checks {
		if got := r.Header.Get(c.header); got != c.want {
			t.Errorf("upstream %s = %q, want %q", c.header, got, c.want)
		}
	}
	if r.Host != "shop.test" {
		t.Errorf("upstream Host = %q, want shop.test", r.Host)
	}
	if r.RequestURI != "/path?q=1&b=%20x" {
		t.Errorf("upstream RequestURI = %q, want it unchanged", r.RequestURI)
	}
	for _, h := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate"} {
		if got := resp.Header.Get(h); got != "" {
			t.Errorf("client got %s = %q, want it stripped", h, got)
		}
	}
	if resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("client X-Kept = %q, want yes", resp.Header.Get("X-Kept"))
	}
}

// TestForwardingSettings: each forwarding setting, end to end, against a
// client that sends its own copies of every forwarding header.
func TestForwardingSettings(t *testing.T) {
	const clientHeaders = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: forged.example\r\n"
	tests := []struct {
		name      string
		config    string // the forwarding block
		requestID string // the client's X-Request-Id header line, if any
		// want maps each header to its values upstream, joined with "|";
		// "<id>" is a new 32-hex-digit request id.
		want map[string]string
	}{
		{"defaults", "", "", map[string]string{
			"X-Forwarded-For": "203.0.113.9, 198.51.100.1, 127.0.0.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "shop.test", "X-Request-Id": "<id>"}},
		{"replace", "forwarding: { x_forwarded_for: replace }\n", "X-Request-Id: abc\r\n", map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "shop.test", "X-Request-Id": "abc"}},
		{"pass", "forwarding: { x_forwarded_for: pass }\n", "", map[string]string{
			"X-Forwarded-For": "203.0.113.9|198.51.100.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "shop.test", "X-Request-Id": "<id>"}},
		{"nothing set", "forwarding: { x_forwarded_for: pass, x_forwarded_proto: false, x_forwarded_host: false, request_id: false }\n",
			"", map[string]string{
				"X-Forwarded-For": "203.0.113.9|198.51.100.1", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "forged.example", "X-Request-Id": ""}},
		{"no request id, client's", "forwarding: { request_id: false }\n", "X-Request-Id: abc\r\n", map[string]string{
			"X-Forwarded-For": "203.0.113.9, 198.51.100.1, 127.0.0.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "shop.test", "X-Request-Id": "abc"}},
		{"no request id, client's empty", "forwarding: { request_id: false }\n", "X-Request-Id: \r\n", map[string]string{
			"X-Request-Id": ""}},
		// Connection still strips what it names, passed or not: the
		// client's X-Forwarded-For goes; sluice's own comes after.
		{"pass, named in Connection", "forwarding: { x_forwarded_for: pass }\n", "Connection: X-Forwarded-For\r\n", map[string]string{
			"X-Forwarded-For": "", "X-Forwarded-Proto": "http"}},
		{"append, named in Connection", "", "Connection: X-Forwarded-For, X-Forwarded-Proto\r\n", map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "b", nil)
			px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+tt.config)
			code := rawStatus(t, px.addr, "GET / HTTP/1.1\r\nHost: shop.test\r\n"+clientHeaders+tt.requestID+"\r\n")
			r, _ := b.lastRequest()
			if code != 200 || r == nil {
				t.Fatalf("status %d, backend request %v; want 200 and a request", code, r)
			}
			for name, want := range tt.want {
				got := strings.Join(r.Header.Values(name), "|")
				if want == "<id>" && len(got) == 32 && strings.Trim(got, "0123456789abcdef") == "" {
					continue
				}
				if got != want {
					t.Errorf("upstream %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestForwardingReload: a reload changes the forwarding headers of the
// requests that follow it.
func TestForwardingReload(t *testing.T) {
	b := startBackend(t, "b", nil)
	base := poolYAML("round_robin", []*testBackend{b}, nil)
	px := startProxy(t, base)
	const raw = "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n"
	check := func(wantXFF, wantProto string) {
		t.Helper()
		if code := rawStatus(t, px.addr, raw); code != 200 {
			t.Fatalf("status %d, want 200", code)
		}
		r, _ := b.lastRequest()
		if got, gotProto := r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"); got != wantXFF || gotProto != wantProto {
			t.Errorf("upstream X-Forwarded-For %q, -Proto %q; want %q, %q", got, gotProto, wantXFF, wantProto)
		}
	}
	check("203.0.113.9, 127.0.0.1", "http")
	cfg, err := config.Parse("reload.yaml", []byte(base+"forwarding: { x_forwarded_for: replace, x_forwarded_proto: false }\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.ctrl.Apply(ctx, cfg); err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	check("127.0.0.1", "https")
}

func TestRequestIDGenerated(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	c := testClient(t)
	seen := map[string]bool{}
	for range 20 {
		get(t, c, "http://"+px.addr+"/", nil)
		r, _ := b.lastRequest()
		id := r.Header.Get("X-Request-Id")
		if len(id) != 32 || seen[id] {
			t.Fatalf("X-Request-Id = %q, want a fresh 32-hex id", id)
		}
		seen[id] = true
	}
}

func TestPreserveHostOff(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"preserve_host: false\n")
	get(t, testClient(t), "http://"+px.addr+"/", map[string]string{"Host": "public.example"})
	r, _ := b.lastRequest()
	if r.Host != b.addr() {
		t.Errorf("upstream Host = %q, want backend address %q", r.Host, b.addr())
	}
	if got := r.Header.Get("X-Forwarded-Host"); got != "public.example" {
		t.Errorf("X-Forwarded-Host = %q, want public.example", got)
	}
}

func TestLargeBody(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	body := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	resp, err := testClient(t).Post("http://"+px.addr+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	_, got := b.lastRequest()
	if sha256.Sum256(got) != sha256.Sum256(body) {
		t.Errorf("upstream body: %d bytes, differs from the %d sent", len(got), len(body))
	}
}

func TestChunkedRequestBody(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, got := b.lastRequest(); string(got) != "hello world" {
		t.Errorf("upstream body = %q, want %q", got, "hello world")
	}
}

func TestUpstreamKeepAlive(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	c := testClient(t)
	for range 300 {
		get(t, c, "http://"+px.addr+"/", nil)
	}
	if got := b.conns.Load(); got > 3 {
		t.Errorf("upstream connections = %d for 300 sequential requests, want reuse (<= 3)", got)
	}
}

func TestErrorStatuses(t *testing.T) {
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) })
	ok := startBackend(t, "ok", nil)
	refused := freeAddr(t)
	yml := fmt.Sprintf(`
routes:
  - match: { path_prefix: /slow/ }
    pool: slow
  - match: { path_prefix: /refused/ }
    pool: refused
  - match: { path_prefix: /empty/ }
    pool: empty
  - match: { host: only.example }
    pool: ok
pools:
  slow: { algorithm: round_robin, backends: [{ address: %s }] }
  refused: { algorithm: round_robin, backends: [{ address: %s }] }
  empty: { algorithm: round_robin, backends: [{ address: %s, weight: 0 }] }
  ok: { algorithm: round_robin, backends: [{ address: %s }] }
timeouts: { response: 300ms }
`, slow.addr(), refused, ok.addr(), ok.addr())
	px := startProxy(t, yml)
	c := testClient(t)
	tests := []struct {
		name, path string
		want       int
	}{
		{"no route", "/nothing", 404},
		{"no usable backend", "/empty/", 503},
		{"connection refused", "/refused/", 502},
		{"upstream timeout", "/slow/", 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, _, body := get(t, c, "http://"+px.addr+tt.path, nil)
			if code != tt.want {
				t.Errorf("GET %s = %d %q, want %d", tt.path, code, body, tt.want)
			}
			if !strings.HasPrefix(body, fmt.Sprint(tt.want)) {
				t.Errorf("body = %q, want a short plain-text message starting with %d", body, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want a prompt answer", d)
			}
		})
	}
	if ok.hits.Load() != 0 {
		t.Errorf("weight-0 backend got %d requests, want 0", ok.hits.Load())
	}
}

// freeAddr returns a loopback address nothing listens on.
// freeAddr is a loopback address that refuses connections for the rest
// of the test: a socket bound to it that never listens holds the port, so
// no other call, here or in a parallel test, gets it too (a listener
// closed at once let two calls return the same port, and the config was
// refused as a duplicate backend: a flake in a clean-clone run).
func freeAddr(t testing.TB) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

func TestRetryOnRefused(t *testing.T) {
	good := startBackend(t, "good", nil)
	yml := fmt.Sprintf(`
routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
`, freeAddr(t), good.addr())
	px := startProxy(t, yml)
	c := testClient(t)
	for range 20 {
		if code, from, _ := get(t, c, "http://"+px.addr+"/", nil); code != 200 || from != "good" {
			t.Fatalf("GET = %d from %q, want 200 from good (retried past the refused backend)", code, from)
		}
	}
}

func TestHostileRequests(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_header_bytes: 4096, max_body_bytes: 1024 }\n")
	tests := []struct {
		name, raw string
		want      int
	}{
		{"garbage request line", "NOT A REQUEST\r\n\r\n", 400},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nNo-Colon-Here\r\n\r\n", 400},
		{"content-length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"headers too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431},
		{"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("a", 5000), 413},
		{"body too large, announced with Expect: 100-continue", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 413},
		{"control char in uri", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"transfer-encoding identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"space inside a header name", "GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n", 400},
		{"transfer encoding with a space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer Encoding: chunked\r\n\r\nhello", 400},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"CONNECT", "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", 405},
		{"userinfo in Host", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", 400},
		{"userinfo in absolute target", "GET http://user:pw@x/p HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"ftp absolute target", "GET ftp://x/p HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"https absolute target", "GET https://x/p HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment in target", "GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.hits.Load()
			code := rawStatus(t, px.addr, tt.raw)
			if code != tt.want {
				t.Errorf("status = %d, want %d", code, tt.want)
			}
			if got := b.hits.Load() - before; got != 0 {
				t.Errorf("backend saw %d requests, want 0", got)
			}
		})
	}
}

// TestExpectContinue: a body within the limit is asked for with 100
// Continue and forwarded, without the Expect; one announced over the limit gets 413 at once,
// with the usual error body, and never a 100 first.
func TestExpectContinue(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_body_bytes: 1024 }\n")
	tests := []struct {
		name     string
		length   int
		want     int
		wantBody string
	}{
		{"within the limit", 1024, 200, "hello from b\n"},
		{"over the limit", 1025, 413, "413 request body too large\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tt.length)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			continued := resp.StatusCode == 100
			if continued != (tt.want == 200) {
				t.Fatalf("first answer %d, want 100 Continue only for a body within the limit", resp.StatusCode)
			}
			if continued {
				if _, err := conn.Write(bytes.Repeat([]byte("x"), tt.length)); err != nil {
					t.Fatal(err)
				}
				if resp, err = http.ReadResponse(br, nil); err != nil {
					t.Fatal(err)
				}
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || string(body) != tt.wantBody {
				t.Fatalf("answer %d %q, want %d %q", resp.StatusCode, body, tt.want, tt.wantBody)
			}
			if tt.want == 200 {
				b.mu.Lock()
				got := len(b.body)
				b.mu.Unlock()
				if got != tt.length {
					t.Errorf("backend got a %d-byte body, want %d", got, tt.length)
				}
				// sluice answered the Expect and sends the body at once.
				if last, _ := b.lastRequest(); last.Header.Get("Expect") != "" {
					t.Errorf("backend got Expect: %q, want none", last.Header.Get("Expect"))
				}
			}
		})
	}
}

// rawStatus writes raw bytes to addr and returns the status code answered.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	return rawExchange(t, addr, raw).StatusCode
}

var _ = math.Abs

func TestClientConnectionClose(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	tests := []struct {
		name, raw string
		wantClose bool
	}{
		{"keep-alive", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"client asks close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true},
		{"http/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, tt.raw)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			// A closed connection reads EOF at once; an open one times out.
			_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err = br.ReadByte()
			closed := err == io.EOF
			if closed != tt.wantClose {
				t.Errorf("connection closed = %v (read error %v), want %v", closed, err, tt.wantClose)
			}
		})
	}
	if b.conns.Load() != 1 {
		t.Errorf("upstream connections = %d, want 1 (client close must not close the upstream connection)", b.conns.Load())
	}
}
