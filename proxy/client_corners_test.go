package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Malformed and hostile client requests (found by review).

// Found by review, fixed: checkTarget (handler.go) refuses an origin-form target that starts
// with "//" (README, Error codes: "a target starting with //"), because a
// backend that reads such a target as an authority (fasthttp does when it
// holds "://" anywhere) routes it without its first segment
// (TestRoutingNetworkPathTargetLosesFirstSegment). The same target put
// behind an absolute-form prefix passes: checkTarget checks only the
// authority and checkPath of the rest, never whether the rest starts with
// "//". sluice routes "GET http://h//app/admin/x?u=http://y" on
// /app/admin/x (the app pool), and forwards it in origin form as
// "//app/admin/x?u=http://y", which a fasthttp backend in the app pool
// reads as host "app", path /admin/x: the /admin/ route is bypassed.
// Now 400, as for the origin-form spelling, and nothing upstream: an
// absolute-form path that starts with "//" is refused whatever follows.
// (nginx 1.22 forwards "//app/admin/x..." too, but sluice's own rule is
// the one to keep; HAProxy 2.6 forwards the absolute form unchanged.)
func TestAbsoluteFormNetworkPathTarget(t *testing.T) {
	r := startPoolRig(t, `  - { match: { path_prefix: /admin/ }, pool: admin }
  - { pool: app }
`, "admin", "app")
	for _, raw := range []string{
		"GET http://h//app/admin/x?u=http://y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET http://h//app/admin/x?u=http://y HTTP/1.0\r\n\r\n",
	} {
		status, pool, line, head := r.send(t, raw)
		if status == "HTTP/1.1 400 Bad Request" && pool == "" {
			continue
		}
		// What a fasthttp backend in that pool makes of the target.
		var req fasthttp.Request
		_ = req.Read(bufio.NewReader(strings.NewReader(head + "\r\n\r\n")))
		t.Errorf("%q: %q from pool %q, upstream %q (a fasthttp backend reads path %q); want 400: the path part of an absolute-form target starts with //",
			strings.SplitN(raw, "\r\n", 2)[0], status, pool, line, req.URI().Path())
	}
}

// Found by review, fixed: rejected (handler.go) refuses a Host header over maxHostLen (255)
// with 400, since normalizeHost cannot lower-case a longer one in its
// 256-byte buffer (TestRoutingLongHostNotLowerCased). An absolute-form
// target's authority replaces Host after that check (forward,
// targetHost + SetHostBytes) and is never held to the limit: a 267-byte
// authority is routed as it came, not lower-cased, so its upper-case
// spelling misses the "*.example.com" route its lower-case spelling takes
// and lands on the catch-all pool, and goes upstream as a 267-byte Host.
// Now 400, as with the Host header (README: "a Host over 255 bytes gets
// 400"): checkTarget refuses an authority longer than maxHostLen. HAProxy
// 2.6 answers this request 400 too.
func TestAbsoluteFormHostTooLong(t *testing.T) {
	r := startPoolRig(t, `  - { match: { host: "*.example.com" }, pool: wild }
  - { pool: app }
`, "wild", "app")
	label := strings.Repeat("a", 63) + "."
	long := strings.Repeat(label, 4) + "example.com" // 267 bytes
	if status, _, _, _ := r.send(t, "GET / HTTP/1.1\r\nHost: "+strings.ToUpper(long)+"\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Fatalf("the same name as Host: %q, want 400 (the premise)", status)
	}
	_, lower, _, _ := r.send(t, "GET http://"+long+"/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	status, upper, _, head := r.send(t, "GET http://"+strings.ToUpper(long)+"/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Errorf("absolute-form target with a %d-byte host: %q from pool %q (lower-case: pool %q), upstream Host %d bytes; want 400 as for a Host header over 255 bytes",
			len(long), status, upper, lower, len(review16HostOf(head)))
	}
}

func review16HostOf(head string) string {
	for line := range strings.SplitSeq(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Host") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Found by review, fixed: refusedBeforeBody (errors.go) marks a CONNECT, or a version other
// than HTTP/1.x, as bodiless so that it is refused from its head at once
// (README, Error codes: "a CONNECT (405) or a version other than HTTP/1.x
// (505) that announces a body"), but only when Content-Length is over 1
// ("case n > 1"). With "Content-Length: 1" fasthttp waits for that byte,
// and a client that waits for the answer before it sends the body gets
// 408 after timeouts.client_read (a minute here) instead of 405/505 at
// once. nginx 1.22 answers both at once (400 for the CONNECT, 505).
// Now "case n > 0" in refusedBeforeBody.
func TestRefusedHeadOneByteBody(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, "timeouts: { client_read: 1m }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	for _, tt := range []struct {
		name, raw string
		want      string
	}{
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 1\r\n\r\n", "HTTP/1.1 405"},
		{"HTTP/2.0", "POST / HTTP/2.0\r\nHost: x\r\nContent-Length: 1\r\n\r\n", "HTTP/1.1 505"},
		// Coverage: a length of 2 is answered at once already.
		{"CONNECT, length 2", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nContent-Length: 2\r\n\r\n", "HTTP/1.1 405"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%q: no answer within 2 s (it comes as 408 after client_read); want %q at once", tt.raw, tt.want)
			}
			if !strings.HasPrefix(line, tt.want) {
				t.Fatalf("%q: answer %q, %v; want %q", tt.raw, line, err, tt.want)
			}
		})
	}
	t.Cleanup(func() {
		if n := b.hits.Load(); n != 0 {
			t.Errorf("backend saw %d requests, want 0", n)
		}
	})
}

// TestHalfClosedClients: a client that half-closes (FIN after
// its bytes) gets the answers to every whole request it sent and a 400
// for a cut one, at once, never a hang until client_read; a cut request
// never reaches the backend. (Coverage: behaves right.)
func TestHalfClosedClients(t *testing.T) {
	be := startSmuggleBackend(t)
	px := startProxy(t, "timeouts: { client_read: 1m, idle: 1m }\n"+
		poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: be.ln}}}, nil))
	const get = "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name, raw string
		want      []string // status lines, in order
	}{
		{"whole request", fmt.Sprintf(get, 1), []string{"200"}},
		{"two pipelined", fmt.Sprintf(get, 2) + fmt.Sprintf(get, 3), []string{"200", "200"}},
		{"head cut", "GET /cut HTTP/1.1\r\nHost: x\r\n", []string{"400"}},
		{"second head cut", fmt.Sprintf(get, 4) + "GET /cut HTTP/1.1\r\nHost: x\r\n", []string{"200", "400"}},
		{"body cut", "POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", []string{"400"}},
		{"chunked body cut", "POST /cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", nil},
		{"no body after Expect", "POST /cut HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n", []string{"100", "400"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, out)
			}
			var got []string
			for _, part := range strings.Split(string(out), "HTTP/1.1 ")[1:] {
				got = append(got, part[:3])
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("answers %v, want %v (%q)", got, tt.want, out)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if raw, _ := be.snapshot(); strings.Contains(raw, "/cut") {
		t.Errorf("a cut request reached the backend: %q", raw)
	}
}

// TestHeadLimitBoundary: limits.max_header_bytes counts the
// request line and headers with their blank line: a head of exactly the
// limit is served, one byte more gets 431 and never reaches the backend.
// (Coverage: behaves right.)
func TestHeadLimitBoundary(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, "limits: { max_header_bytes: 2048 }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	const base = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
	for _, tt := range []struct{ size, want int }{{2048, 200}, {2049, 431}} {
		raw := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", tt.size-len(base)) + "\r\n\r\n"
		before := b.hits.Load()
		if got := rawStatus(t, px.addr, raw); got != tt.want {
			t.Errorf("a %d-byte head: %d, want %d", len(raw), got, tt.want)
		}
		if hits := b.hits.Load() - before; (tt.want == 200) != (hits == 1) {
			t.Errorf("a %d-byte head: the backend saw %d requests", len(raw), hits)
		}
	}
}

// TestUpgradesAndOddTargets: protocol switches a client asks for
// never reach the backend (Upgrade, Connection and every field it names,
// HTTP2-Settings included: no h2c smuggling), the HTTP/2 preface and
// "GET *" are refused, "OPTIONS *" is forwarded as it came. (Coverage:
// behaves right.)
func TestUpgradesAndOddTargets(t *testing.T) {
	b := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	px := startProxy(t, poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: b.ln}}}, nil))
	for _, tt := range []struct {
		name, raw string
		want      int
		line      string // the backend's request line when 200
	}{
		{"h2c upgrade", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", 200, "GET / HTTP/1.1"},
		{"websocket upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 200, "GET /ws HTTP/1.1"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200, "OPTIONS * HTTP/1.1"},
		{"GET *", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b.mu.Lock()
			b.last = ""
			b.mu.Unlock()
			resp := rawExchange(t, px.addr, tt.raw)
			got := b.got()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (backend got %q)", resp.StatusCode, tt.want, got)
			}
			if tt.want != 200 {
				if got != "" {
					t.Errorf("refused, yet the backend got %q", got)
				}
				return
			}
			if line, _, _ := strings.Cut(got, "\r\n"); line != tt.line {
				t.Errorf("backend request line %q, want %q", line, tt.line)
			}
			for _, name := range []string{"upgrade:", "connection:", "http2-settings:"} {
				if strings.Contains(strings.ToLower(got), "\r\n"+name) {
					t.Errorf("backend got %s:\n%q", name, got)
				}
			}
			if r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(got))); err != nil || r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
				t.Errorf("backend head %q: %v", got, err)
			}
		})
	}
}
