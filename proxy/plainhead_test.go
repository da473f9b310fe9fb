package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// passedOnByParser is what the front end passes on of a final response
// head read the general way: fasthttp's parser, then the handler's
// handling of a response (handler.go, forward). ok is false when the
// parser or the handler refuses the head. close is the upstream's wish
// to close its connection, as the upstream client sees it.
func passedOnByParser(head []byte, noDefaultContentType bool) (out []byte, status, length int, close, ok bool) {
	var resp fasthttp.Response
	resp.Header.SetNoDefaultContentType(noDefaultContentType)
	if err := resp.Header.Read(bufio.NewReader(bytes.NewReader(head))); err != nil {
		return nil, 0, 0, false, false
	}
	close = resp.Header.ConnectionClose()
	resp.Header.ResetConnectionClose()
	if !bytes.Equal(resp.Header.Protocol(), strHTTP11) {
		resp.Header.SetProtocol(strHTTP11)
	}
	found := scanResponse(&resp.Header)
	if badResponse(&resp, found) != "" {
		return nil, 0, 0, false, false
	}
	if found&hTransferEncoding != 0 {
		if _, ok := dropTrailers(&resp.Header, nil, nil); !ok {
			return nil, 0, 0, false, false
		}
	}
	stripHopByHop(&resp.Header, found, nil)
	return withoutDate(resp.Header.AppendBytes(nil)), resp.StatusCode(), resp.Header.ContentLength(), close, true
}

// sameHead reports whether two heads have the same status line and the
// same fields, in any order: the general path's deletions (fasthttp's
// DelBytes fills a deleted field's place with the last field) may move
// any field, also one of two that share a name; readPlainHead keeps the
// backend's order (TestPlainHeadFieldOrder).
func sameHead(a, b []byte) bool {
	la, lb := strings.Split(string(a), "\r\n"), strings.Split(string(b), "\r\n")
	if len(la) != len(lb) || la[0] != lb[0] {
		return false
	}
	byName := func(lines []string) map[string][]string {
		m := map[string][]string{}
		for _, l := range lines[1:] {
			name, _, _ := strings.Cut(l, ":")
			m[strings.ToLower(name)] = append(m[strings.ToLower(name)], l)
		}
		return m
	}
	ma, mb := byName(la), byName(lb)
	if len(ma) != len(mb) {
		return false
	}
	for name, fields := range ma {
		mine, other := slices.Clone(fields), slices.Clone(mb[name])
		slices.Sort(mine)
		slices.Sort(other)
		if !slices.Equal(mine, other) {
			return false
		}
	}
	return true
}

// passedOnPlain is the same for readPlainHead, into a header that held
// an earlier answer (a retry's, or a 103's).
func passedOnPlain(head []byte, noDefaultContentType bool) (out []byte, status, length int, close, ok bool) {
	var resp fasthttp.Response
	resp.Header.SetNoDefaultContentType(noDefaultContentType)
	_ = resp.Header.Read(bufio.NewReader(strings.NewReader("HTTP/1.0 103 Early\r\nLink: </a>\r\nContent-Type: text/old\r\nServer: old\r\nSet-Cookie: a=b\r\nConnection: close\r\nContent-Encoding: br\r\n\r\n")))
	if !readPlainHead(&resp.Header, head) {
		return nil, 0, 0, false, false
	}
	close = resp.Header.ConnectionClose()
	resp.Header.ResetConnectionClose()
	return withoutDate(resp.Header.AppendBytes(nil)), resp.StatusCode(), resp.Header.ContentLength(), close, true
}

// withoutDate drops the Date line fasthttp's writer adds from its clock,
// which may tick between two writes.
func withoutDate(head []byte) []byte {
	return regexp.MustCompile(`(?m)^Date: [^\r]*\r\n`).ReplaceAll(head, nil)
}

// TestReadPlainHead: the heads backends usually send are read by
// readPlainHead, and passed on as fasthttp's parser and the handler would
// pass them on; any other head is left to them.
func TestReadPlainHead(t *testing.T) {
	tests := []struct {
		name  string
		head  string
		plain bool
	}{
		{"nginx", "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 09:56:37 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Backend: up1\r\n\r\n", true},
		{"lower-case names, spaces and tabs around values", "HTTP/1.1 404 Not Found\r\ncontent-type:text/html \r\nx-a:\t b c\t\r\ncontent-length:  0\r\nvary: a\r\nvary: b\r\n\r\n", true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n", true},
		{"empty reason", "HTTP/1.1 500 \r\nContent-Length: 2\r\n\r\n", true},
		{"cookies, encoding, obs-text", "HTTP/1.1 302 Found\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nLocation: /x\r\nContent-Encoding: gzip\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 10\r\n\r\n", true},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", true},
		{"Connection: close, keep-alive and hop-by-hop fields", "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: Keep-Alive, CLOSE\r\nProxy-Connection: x\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: x\r\nContent-Length: 2\r\n\r\n", true},
		{"empty value", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 2\r\n\r\n", true},

		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false},
		{"204", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false},
		{"1xx", "HTTP/1.1 103 Early Hints\r\nContent-Length: 10\r\n\r\n", false},
		{"status 600", "HTTP/1.1 600 X\r\nContent-Length: 2\r\n\r\n", false},
		{"no Content-Length", "HTTP/1.1 200 OK\r\n\r\n", false},
		{"two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", false},
		{"Content-Length with a leading zero", "HTTP/1.1 200 OK\r\nContent-Length: 02\r\n\r\n", false},
		{"Content-Length not a number", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\n", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", false},
		{"Trailer", "HTTP/1.1 200 OK\r\nTrailer: X-A\r\nContent-Length: 2\r\n\r\n", false},
		{"Connection names a field", "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\n", false},
		{"space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n", false},
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 2\r\n\r\n", false},
		{"name not a token", "HTTP/1.1 200 OK\r\nX(A): 1\r\nContent-Length: 2\r\n\r\n", false},
		{"control byte in a value", "HTTP/1.1 200 OK\r\nX-A: 1\x002\r\nContent-Length: 2\r\n\r\n", false},
		{"CR inside a line", "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 2\r\n\r\n", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n", false},
		{"bare LF inside the head", "HTTP/1.1 200\r\nContent-Length:0\r\n0\n0\r\n\r\n", false},
		{"empty line first", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false},
		{"control byte in the reason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\n", false},
		{"no space before the reason", "HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, noDefault := range []bool{true, false} {
				got, status, length, close, plain := passedOnPlain([]byte(tt.head), noDefault)
				if plain != tt.plain {
					t.Fatalf("read as plain: %v, want %v", plain, tt.plain)
				}
				if !plain {
					return
				}
				want, wantStatus, wantLength, wantClose, ok := passedOnByParser([]byte(tt.head), noDefault)
				if !ok {
					t.Fatalf("read as plain, but the parser or the handler refuses it")
				}
				if !sameHead(got, want) || status != wantStatus || length != wantLength || close != wantClose {
					t.Fatalf("NoDefaultContentType %v: plain read passes on\n%q (status %d, length %d, close %v), the parser\n%q (%d, %d, %v)",
						noDefault, got, status, length, close, want, wantStatus, wantLength, wantClose)
				}
			}
		})
	}
}

// FuzzReadPlainHead: a head readPlainHead reads is one fasthttp's parser
// and the handler accept, and pass on the same fields (sameHead).
func FuzzReadPlainHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Backend: up1\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\ncontent-type:text/html \r\nx-a:\t b c\t\r\ncontent-length:  0\r\n\r\n",
		"HTTP/1.1 302 Found\r\nSet-Cookie: a=1\r\nConnection: close\r\nKeep-Alive: 5\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 \xff\r\nX-\xc3: \x7f\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, bare, ok := emptyLine(data)
		if !ok || bare {
			return
		}
		head := data[:end]
		got, status, length, close, plain := passedOnPlain(head, true)
		if !plain {
			return
		}
		want, wantStatus, wantLength, wantClose, ok := passedOnByParser(head, true)
		if !ok {
			t.Fatalf("read as plain, but the parser or the handler refuses %q", head)
		}
		if !sameHead(got, want) || status != wantStatus || length != wantLength || close != wantClose {
			t.Fatalf("from %q the plain read passes on\n%q (status %d, length %d, close %v), the parser\n%q (%d, %d, %v)",
				head, got, status, length, close, want, wantStatus, wantLength, wantClose)
		}
	})
}

// TestTokenIs: folding by bit 0x20 matches only the same name, in any
// case, among tokens.
func TestTokenIs(t *testing.T) {
	tests := []struct {
		name, s string
		want    bool
	}{
		{"content-length", "Content-Length", true},
		{"CONTENT-LENGTH", "Content-Length", true},
		{"Content-Lengt", "Content-Length", false},
		{"Content_Length", "Content-Length", false},
		{"Content-Lengtx", "Content-Length", false},
		{"te", "TE", true},
		{"t~", "TE", false},
	}
	for _, tt := range tests {
		if got := tokenIs([]byte(tt.name), tt.s); got != tt.want {
			t.Errorf("tokenIs(%q, %q) = %v, want %v", tt.name, tt.s, got, tt.want)
		}
	}
}

// BenchmarkResponseHead: nginx's answer in the benchmark (bench/lib.sh),
// read and made ready to pass on, the general way and the plain way.
func BenchmarkResponseHead(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 09:56:37 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Backend: up1\r\n\r\n")
	var resp fasthttp.Response
	b.Run("parser", func(b *testing.B) {
		src := bytes.NewReader(head)
		r := bufio.NewReader(src)
		var scratch []byte
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(head)
			r.Reset(src)
			if err := resp.Header.Read(r); err != nil {
				b.Fatal(err)
			}
			found := scanResponse(&resp.Header)
			scratch = stripHopByHop(&resp.Header, found, scratch)
		}
	})
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !readPlainHead(&resp.Header, head) {
				b.Fatal("not plain")
			}
		}
	})
}

// FuzzHasControl: the word-at-a-time hasControl agrees with a byte loop.
func FuzzHasControl(f *testing.F) {
	for _, s := range []string{"", "nginx/1.22.1", "application/octet-stream", "a\tb c d e f g h", "12345678\x7f", "1234567\x1f", "\xff\xfe\x80\x81\xa0\xc3\xa9xyz", "abcdefgh\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := false
		for _, c := range b {
			if c < 0x20 && c != '\t' || c == 0x7f {
				want = true
			}
		}
		if got := hasControl(b); got != want {
			t.Fatalf("hasControl(%q) = %v, want %v", b, got, want)
		}
	})
}

// TestPlainHeadEndToEnd: through the proxy, a plain head (read by
// readPlainHead) loses its hop-by-hop fields and keeps the rest, and a
// backend's Connection: close keeps its connection from being used
// again, while the client's connection stays open. The backend here
// says close but keeps its connection open and answers again on it: a
// proxy that reused it would send both requests there. The backend's Date
// is replaced by sluice's own, as on the general path.
func TestPlainHeadEndToEnd(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nServer: raw\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nKeep-Alive: timeout=5\r\nConnection: Close\r\n" +
		"Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Kept: yes\r\nSet-Cookie: a=1\r\nContent-Length: 2\r\n\r\nok"
	if !readPlainHead(new(fasthttp.ResponseHeader), []byte(answer[:len(answer)-2])) {
		t.Fatal("the backend's head is not plain: the test would not cover readPlainHead")
	}
	var mu sync.Mutex
	perConn := []int{}
	ln := serveRaw(t, func(c net.Conn) {
		mu.Lock()
		i := len(perConn)
		perConn = append(perConn, 0)
		mu.Unlock()
		r := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(r); err != nil {
				return
			}
			mu.Lock()
			perConn[i]++
			mu.Unlock()
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ln.Addr().String()+" }\n")

	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		for _, h := range []string{"Keep-Alive", "Proxy-Authenticate", "Upgrade", "Connection"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("request %d: client got %s: %q, want it stripped", i, h, v)
			}
		}
		if resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("Server") != "raw" || resp.Header.Get("Set-Cookie") != "a=1" {
			t.Errorf("request %d: end-to-end fields lost: %v", i, resp.Header)
		}
		if d := resp.Header.Values("Date"); len(d) != 1 || d[0] == "Mon, 01 Jan 2001 00:00:00 GMT" {
			t.Errorf("request %d: Date %q, want sluice's own alone", i, d)
		}
		if resp.Close {
			t.Fatalf("request %d: the backend's close reached the client's connection", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(perConn) != 2 || perConn[0] != 1 || perConn[1] != 1 {
		t.Fatalf("requests per upstream connection %v, want [1 1]: a connection whose backend said close was used again", perConn)
	}
}
