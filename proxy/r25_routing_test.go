package proxy

// Review 25, routing: what the backend receives and what the client gets
// back, end to end over loopback sockets. No test here failed when
// written: the corners below behaved as README "Routing" and
// "Forwarding" say, and are kept as regression tests for what no other
// test pins down (coverage).

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// r25RoutingRespRig is sluice in front of one raw backend that
// answers every request with resp and closes.
func r25RoutingRespRig(t *testing.T, resp string) *poolRig {
	t.Helper()
	b := startRawBackend(t, resp)
	r := &poolRig{pools: map[string]*rawBackend{"p": b}}
	r.px = startProxy(t, "routes:\n  - { pool: p }\npools:\n  p: { backends: [{ address: "+b.ln.Addr().String()+" }] }\n")
	return r
}

// Coverage: request-targets with bytes fasthttp could re-encode or read
// as structure go upstream byte for byte and are routed on their path
// only: RFC 3986 "unwise" characters, raw bytes over 0x7f, a '%' not
// followed by two hex digits, and an absolute-form target whose query
// holds "@" or "://" (neither userinfo nor a second authority: the route
// and Host are the target's host, no Authorization appears).
func TestRoutingOddTargetsForwardedAsSent(t *testing.T) {
	r := startPoolRig(t, `  - { pool: any }
  - { match: { path_prefix: /admin/ }, pool: admin }
  - { match: { host: h }, pool: h }
  - { match: { host: evil }, pool: evil }
`, "any", "admin", "h", "evil")
	for _, tt := range []struct{ target, pool, sent, host string }{
		{"/a\"b<c>{d}|e^f`g?x=\"<>{}|^`", "any", "", ""},
		{"/\x80\xff?\x80", "any", "", ""},
		{"/a%", "any", "", ""},
		{"/%%/admin/", "any", "", ""},
		{"/admin/x/..", "admin", "", ""},    // resolves to /admin/ on both sides
		{"/admin/x/../../y", "any", "", ""}, // and to /y
		{"/admin%3f/../y", "any", "", ""},   // %3f is no separator
		{"/%2561dmin/", "any", "", ""},      // decoded once, as a backend does
		{"http://h?user:pass@evil/x", "h", "/?user:pass@evil/x", "h"},
		{"http://h?x=http://evil/", "h", "/?x=http://evil/", "h"},
		{"http://h/?u=user:pass@evil", "h", "/?u=user:pass@evil", "h"},
		{"/x?http://evil/", "any", "", ""},
	} {
		host := tt.host
		if host == "" {
			host = "a"
		}
		status, pool, line, head := r.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		sent := tt.sent
		if sent == "" {
			sent = tt.target
		}
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || line != "GET "+sent+" HTTP/1.1" {
			t.Errorf("GET %q: %q from %q, upstream %q; want 200 from %q, upstream target %q", tt.target, status, pool, line, tt.pool, sent)
			continue
		}
		if !strings.Contains(head, "\r\nHost: "+host+"\r\n") || strings.Contains(strings.ToLower(head), "\r\nauthorization:") {
			t.Errorf("GET %q: upstream head %q, want Host: %s and no Authorization", tt.target, head, host)
		}
	}
}

// Coverage: Host spellings that name the same host route alike (empty
// port, rooted name with an empty port, sub-delims in a reg-name are a
// name of their own), and the Host goes upstream as the client wrote it.
func TestRoutingHostSpellings(t *testing.T) {
	r := startPoolRig(t, `  - { pool: any }
  - { match: { host: api.example.com }, pool: api }
`, "any", "api")
	for _, tt := range []struct{ host, pool string }{
		{"api.example.com:", "api"},
		{"API.Example.Com.:", "api"},
		{"api.example.com\t", "api"}, // trailing whitespace is not part of the value
		{"api.example.com;x", "any"},
		{"api.example.com:99999", "api"}, // RFC 3986: port = *DIGIT
	} {
		status, pool, _, head := r.send(t, "GET /x HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
		want := strings.TrimSpace(tt.host)
		if status != "HTTP/1.1 200 OK" || pool != tt.pool || !strings.Contains(head, "\r\nHost: "+want+"\r\n") {
			t.Errorf("Host %q: %q from %q, upstream head %q; want 200 from %q with Host: %s", tt.host, status, pool, head, tt.pool, want)
		}
	}
}

// Coverage: the backend's Date is replaced whatever its case or number of
// lines, its Server is kept, hop-by-hop fields in any case are removed
// from a plain head, and repeated fields keep their order and values
// whatever the case of their names (README "Forwarding").
func TestRoutingResponseFieldsPlainHead(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
		want       []string // lines the client's head must hold, in order
		not        []string // lower-case names it must not hold
	}{
		{"lower-case date and server",
			"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2001 00:00:00 GMT\r\nserver: be/1\r\ncontent-length: 2\r\n\r\nok",
			[]string{"Server: be/1"}, []string{"date: mon, 01 jan 2001"}},
		{"two Date lines",
			"HTTP/1.1 200 OK\r\nDate: a\r\nDATE: b\r\nContent-Length: 2\r\n\r\nok",
			nil, []string{"date: a", "date: b"}},
		{"hop-by-hop in odd case",
			"HTTP/1.1 200 OK\r\nkeep-alive: timeout=5\r\nPROXY-CONNECTION: x\r\nupgrade: h2c\r\nte: x\r\nproxy-authenticate: x\r\nContent-Length: 2\r\n\r\nok",
			nil, []string{"keep-alive:", "proxy-connection:", "upgrade:", "te:", "proxy-authenticate:"}},
		{"repeated fields in mixed case",
			"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\nX-A: 4\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
			[]string{"X-A: 1", "X-A: 2", "X-B: 3", "X-A: 4", "Set-Cookie: a=1", "Set-Cookie: b=2"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := r25RoutingRespRig(t, tt.resp)
			out := rawWire(t, r.px.addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			head, body, _ := strings.Cut(out, "\r\n\r\n")
			if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || body != "ok" {
				t.Fatalf("answer %q, want 200 with body ok", out)
			}
			if n := strings.Count(strings.ToLower(head), "\r\ndate: "); n != 1 {
				t.Errorf("%d Date lines in %q, want sluice's one", n, head)
			}
			lines := strings.Split(head, "\r\n")
			at := 0
			for _, w := range tt.want {
				for at < len(lines) && lines[at] != w {
					at++
				}
				if at == len(lines) {
					t.Errorf("head %q lacks %q (in this order: %q)", head, w, tt.want)
					break
				}
				at++
			}
			for _, n := range tt.not {
				if strings.Contains(strings.ToLower(head), "\r\n"+n) {
					t.Errorf("head %q holds %q", head, n)
				}
			}
		})
	}
}

// Coverage: limits.max_header_bytes holds for each request of a
// pipelined batch on its own, wherever its head starts in the
// connection's read buffer: a head of exactly the limit behind a POST's
// body or another head is served, one byte more gets 431 after the
// requests before it were answered, and never reaches the backend.
func TestRoutingPipelinedHeadAtLimit(t *testing.T) {
	const limit = 2048
	b := startBackend(t, "b", nil)
	px := startProxy(t, fmt.Sprintf("limits: { max_header_bytes: %d }\n", limit)+poolYAML("round_robin", []*testBackend{b}, nil))
	head := func(size int, last bool) string {
		pre := "GET /h HTTP/1.1\r\nHost: x\r\n"
		if last {
			pre += "Connection: close\r\n"
		}
		pre += "X-Pad: "
		return pre + strings.Repeat("a", size-len(pre)-len("\r\n\r\n")) + "\r\n\r\n"
	}
	post := "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\n\r\n" + strings.Repeat("b", 1500)
	status := regexp.MustCompile(`HTTP/1\.1 (\d{3}) `)
	for _, tt := range []struct {
		name, raw string
		want      []string
	}{
		{"behind a POST body", post + head(limit, true), []string{"200", "200"}},
		{"behind a head", head(1000, false) + head(limit, true), []string{"200", "200"}},
		{"three at the limit", head(limit, false) + head(limit, false) + head(limit, true), []string{"200", "200", "200"}},
		{"one over behind a POST body", post + head(limit+1, true), []string{"200", "431"}},
		{"one over behind a head", head(limit, false) + head(limit+1, true), []string{"200", "431"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			before := b.hits.Load()
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(c)
			var got []string
			for _, m := range status.FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("statuses %v, want %v", got, tt.want)
			}
			served := 0
			for _, s := range tt.want {
				if s == "200" {
					served++
				}
			}
			if hits := b.hits.Load() - before; hits != int64(served) {
				t.Errorf("the backend got %d requests, want %d", hits, served)
			}
		})
	}
}
