package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestHostileHeadsRefused: hostile request heads that no earlier
// vector table covers (TestSmugglingVectors and the routing and Host
// corner tests), each on a fresh connection with an innocent request
// pipelined behind it, get their 4xx/5xx, the connection closes, and not
// a byte reaches the backend. Checked against RFC 9112 (§3: request line,
// §5: field syntax, §3.2: Host) and nginx, which refuses each too.
// (Passes: regression coverage from review 19.)
func TestHostileHeadsRefused(t *testing.T) {
	const h = "POST / HTTP/1.1\r\nHost: x\r\n"
	const g = "GET / HTTP/1.1\r\nHost: x\r\n"
	chunked := h + "Transfer-Encoding: chunked\r\n"
	tests := []struct {
		name  string
		raw   string
		codes []int
	}{
		{"method with control byte", "G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"method with (", "GE(T / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"method with DEL", "GET\x7f / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"method with UTF-8", "\xc3\xa9GET / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"lowercase CONNECT", "connect x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", []int{400, 405}},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", []int{505}},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", []int{505}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", []int{400, 505}},
		{"HTTP/01.1", "GET / HTTP/01.1\r\nHost: x\r\n\r\n", []int{400, 505}},
		{"HTTP/1", "GET / HTTP/1\r\nHost: x\r\n\r\n", []int{400, 505}},
		{"no version", "GET / \r\nHost: x\r\n\r\n", []int{400}},
		{"asterisk-form GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"authority-form GET", "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"query-only target", "GET ?x HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"CR in target", "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		{"https target", "GET https://x/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"ftp target", "GET ftp://x/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"http:/ target", "GET http:/x/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"target port not digits", "GET http://x:abc/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"target userinfo encoded", "GET http://u%40x/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"target host backslash", "GET http://x\\y/p HTTP/1.1\r\nHost: y\r\n\r\n", []int{400}},
		{"absolute-form without Host on 1.1", "GET http://x/p HTTP/1.1\r\n\r\n", []int{400}},
		{"empty Host on 1.1", "GET / HTTP/1.1\r\nHost:\r\n\r\n", []int{400}},
		{"Host then empty Host", "GET / HTTP/1.1\r\nHost: x\r\nHost:\r\n\r\n", []int{400}},
		{"empty Host then Host", "GET / HTTP/1.1\r\nHost:\r\nHost: x\r\n\r\n", []int{400}},
		{"Host and host", "GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", []int{400}},
		{"two Host on 1.0", "GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", []int{400}},
		{"Host port not digits", "GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n", []int{400}},
		{"Host two ports", "GET / HTTP/1.1\r\nHost: x:80:90\r\n\r\n", []int{400}},
		{"Host backslash", "GET / HTTP/1.1\r\nHost: x\\y\r\n\r\n", []int{400}},
		{"Host ?", "GET / HTTP/1.1\r\nHost: x?y\r\n\r\n", []int{400}},
		{"Host #", "GET / HTTP/1.1\r\nHost: x#y\r\n\r\n", []int{400}},
		{"Host control byte", "GET / HTTP/1.1\r\nHost: x\x01\r\n\r\n", []int{400}},
		{"Host DEL", "GET / HTTP/1.1\r\nHost: x\x7f\r\n\r\n", []int{400}},
		{"field name DEL", g + "X\x7fA: 1\r\n\r\n", []int{400}},
		{"field name UTF-8", g + "X\xc3\xa9: 1\r\n\r\n", []int{400}},
		{"field value control byte", g + "X-A: a\x01b\r\n\r\n", []int{400}},
		{"field value DEL", g + "X-A: a\x7fb\r\n\r\n", []int{400}},
		{"field value ESC", g + "X-A: a\x1bb\r\n\r\n", []int{400}},
		{"line without colon", g + "Foo\r\n\r\n", []int{400}},
		{"line without colon before Host", "GET / HTTP/1.1\r\nFoo\r\nHost: x\r\n\r\n", []int{400}},
		{"line without colon hiding a length", h + "Content-Length 5\r\nContent-Length: 3\r\n\r\nabc", []int{400}},
		{"Content-Length -1", h + "Content-Length: -1\r\n\r\n", []int{400}},
		{"Content-Length twice, cases differ", h + "Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc", []int{400}},
		{"TE chunked then empty TE", chunked + "Transfer-Encoding:\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}},
		{"TE chunked then gzip", chunked + "Transfer-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}},
		{"TE identity", h + "Transfer-Encoding: identity\r\n\r\n", []int{400, 501}},
		{"announced trailer Content-Length", h + "Trailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 50\r\n\r\n", []int{400}},
		{"announced trailer Host", h + "Trailer: Host\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil\r\n\r\n", []int{400}},
		{"trailer X-Forwarded-For", chunked + "\r\n3\r\nabc\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", []int{400}},
		{"trailer repeats a field, other case", h + "X-Request-Id: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-request-id: b\r\n\r\n", []int{400}},
	}
	const second = "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each has its own backend and sluice
			be, c, br := sendThroughSmuggle(t, tt.raw+second)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("no answer within 5 s (hang)")
				}
				t.Fatalf("answer: %v", err)
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !slices.Contains(tt.codes, resp.StatusCode) {
				t.Errorf("answered %d, want one of %v", resp.StatusCode, tt.codes)
			}
			// The connection closes after the refusal: nothing more is
			// answered, the pipelined request included.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			if extra, err := io.ReadAll(br); len(extra) > 0 || err != nil {
				t.Errorf("after the refusal: %q, %v; want the close", extra, err)
			}
			if raw, _ := be.snapshot(); raw != "" {
				t.Errorf("answered %d, yet the backend got %q; want nothing", resp.StatusCode, raw)
			}
		})
	}
}
