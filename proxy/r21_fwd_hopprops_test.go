package proxy

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHopByHopRequestProperty: 200 requests of random mixes of
// hop-by-hop fields, Connection lists (any case, repeated, with empty
// members), client X-Forwarded-* copies and their underscore aliases each
// reach the backend with no hop-by-hop field, no field the Connection
// fields named, no alias, and exactly one X-Forwarded-For ending in the
// client, one X-Forwarded-Proto "http", one X-Forwarded-Host that is the
// Host, and an X-Request-Id (README, Forwarding). Passes: regression
// coverage from review 21.
func TestHopByHopRequestProperty(t *testing.T) {
	be := startSmuggleBackend(t)
	px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", be.ln.Addr()))
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"Connection", "connection", "CONNECTION", "Keep-Alive", "Proxy-Connection", "TE", "te", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
		"X-Forwarded-For", "x-forwarded-for", "X-Forwarded-Proto", "X-FORWARDED-PROTO", "X-Forwarded-Host", "x-forwarded-host", "X-Request-Id", "Expect", "X-Secret", "x-secret", "X_Forwarded_For", "X-Forwarded_Host", "Forwarded", "Cookie", "User-Agent", "Content-Type", "Accept"}
	vals := []string{"close", "keep-alive", "X-Secret", "x-secret, close", "X-Forwarded-For", "Upgrade", "X-Request-Id", "1.2.3.4", "", " ", "a, b", "https", "evil", "trailers", "websocket", "100-continue", "Keep-Alive, X-Secret", ",,X-Secret,", "x-forwarded-host"}
	checked := 0
	defer func() {
		if checked < 100 {
			t.Errorf("only %d of 200 requests were answered 200 and checked", checked)
		}
	}()
	for i := 0; i < 200; i++ {
		var b strings.Builder
		b.WriteString("GET /r" + fmt.Sprint(i) + " HTTP/1.1\r\nHost: h" + fmt.Sprint(i) + "\r\n")
		var sent []string
		for j := r.IntN(7); j >= 0; j-- {
			n, v := names[r.IntN(len(names))], vals[r.IntN(len(vals))]
			if strings.EqualFold(n, "expect") {
				continue
			}
			fmt.Fprintf(&b, "%s: %s\r\n", n, v)
			sent = append(sent, n+": "+v)
		}
		b.WriteString("\r\n")
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, b.String())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", b.String(), err)
		}
		io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != 200 {
			t.Logf("%q -> %d", b.String(), resp.StatusCode)
			continue
		}
		checked++
		raw, _ := be.snapshot()
		k := strings.Index(raw, "GET /r"+fmt.Sprint(i)+" ")
		if k < 0 {
			t.Fatalf("request %d not found", i)
		}
		head := raw[k:]
		head = head[:strings.Index(head, "\r\n\r\n")]
		connNames := map[string]bool{}
		for _, s := range sent {
			n, v, _ := strings.Cut(s, ": ")
			if strings.EqualFold(n, "connection") {
				for _, tok := range strings.Split(v, ",") {
					tok = strings.ToLower(strings.TrimSpace(tok))
					if tok != "" && tok != "close" && tok != "keep-alive" {
						connNames[tok] = true
					}
				}
			}
		}
		var xff, xfp, xfh, xri []string
		for _, line := range strings.Split(head, "\r\n")[1:] {
			n, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			ln := strings.ToLower(n)
			switch ln {
			case "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate", "expect":
				t.Errorf("%q: hop-by-hop %q reached the backend:\n%s", b.String(), line, head)
			case "x-forwarded-for":
				xff = append(xff, v)
			case "x-forwarded-proto":
				xfp = append(xfp, v)
			case "x-forwarded-host":
				xfh = append(xfh, v)
			case "x-request-id":
				xri = append(xri, v)
			}
			if connNames[ln] && ln != "host" && !strings.HasPrefix(ln, "x-forwarded-") && ln != "x-request-id" {
				t.Errorf("%q: Connection-named %q reached the backend:\n%s", b.String(), line, head)
			}
			if ln == "x_forwarded_for" || ln == "x-forwarded_host" {
				t.Errorf("%q: alias %q reached the backend", b.String(), line)
			}
		}
		if len(xff) != 1 || !strings.HasSuffix(xff[0], "127.0.0.1") {
			t.Errorf("%q: XFF %q\n%s", b.String(), xff, head)
		}
		if len(xfp) != 1 || xfp[0] != "http" {
			t.Errorf("%q: XFP %q", b.String(), xfp)
		}
		if len(xfh) != 1 || xfh[0] != "h"+fmt.Sprint(i) {
			t.Errorf("%q: XFH %q", b.String(), xfh)
		}
		if len(xri) == 0 || xri[0] == "" {
			t.Errorf("%q: X-Request-Id %q\n%s", b.String(), xri, head)
		}
	}
}

// TestHopByHopResponseProperty: 300 backend answers, plain
// (Content-Length) and chunked, of random mixes of hop-by-hop fields and
// Connection lists reach the client with none of them nor any field the
// Connection fields named, and with every other field as often as the
// backend sent it (README, Forwarding: hop-by-hop headers are removed in
// both directions). Passes: regression coverage from review 21.
func TestHopByHopResponseProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	names := []string{"Connection", "connection", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "X-Secret", "x-secret", "Vary", "Set-Cookie", "Server", "Content-Type", "Cache-Control", "Link"}
	vals := []string{"close", "keep-alive", "X-Secret", "x-secret, close", "Upgrade", "Vary", "a", "", "Keep-Alive, X-Secret", ",,X-Secret,", "Set-Cookie", "Server", "timeout=5"}
	var answer atomic.Pointer[string]
	ln := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, *answer.Load())
	})
	px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	respChecked := 0
	defer func() {
		if respChecked < 150 {
			t.Errorf("only %d of 300 answers were 200 and checked", respChecked)
		}
	}()
	for i := 0; i < 300; i++ {
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\n")
		var sent [][2]string
		for j := r.IntN(7); j >= 0; j-- {
			n, v := names[r.IntN(len(names))], vals[r.IntN(len(vals))]
			fmt.Fprintf(&b, "%s: %s\r\n", n, v)
			sent = append(sent, [2]string{n, v})
		}
		chunked := r.IntN(2) == 0
		if chunked {
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		} else {
			b.WriteString("Content-Length: 2\r\n\r\nok")
		}
		resp := b.String()
		answer.Store(&resp)
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		var all []byte
		buf := make([]byte, 4096)
		for !strings.Contains(string(all), "\r\n\r\n") {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		c.Close()
		head, _, _ := strings.Cut(string(all), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200") {
			t.Logf("%q -> %q", resp, head)
			continue
		}
		respChecked++
		connNames := map[string]bool{}
		want := map[string]int{}
		hop := map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "proxy-authorization": true, "proxy-authenticate": true}
		for _, s := range sent {
			if strings.EqualFold(s[0], "connection") {
				for _, tok := range strings.Split(s[1], ",") {
					tok = strings.ToLower(strings.TrimSpace(tok))
					if tok != "" && tok != "close" && tok != "keep-alive" {
						connNames[tok] = true
					}
				}
			}
		}
		for _, s := range sent {
			ln := strings.ToLower(s[0])
			if (ln == "server" || ln == "content-type") && s[1] == "" {
				continue
			}
			if !hop[ln] && !connNames[ln] {
				want[ln]++
			}
		}
		got := map[string]int{}
		for _, line := range strings.Split(head, "\r\n")[1:] {
			n, _, _ := strings.Cut(line, ":")
			ln := strings.ToLower(n)
			if hop[ln] || connNames[ln] {
				t.Errorf("%q: %q reached the client:\n%s", resp, line, head)
			}
			if ln != "date" && ln != "content-length" {
				got[ln]++
			}
		}
		for k, v := range want {
			if k == "server" || k == "content-type" {
				continue
			}
			if got[k] != v {
				t.Errorf("%q: %s x%d, want x%d:\n%s", resp, k, got[k], v, head)
			}
		}
	}
}
