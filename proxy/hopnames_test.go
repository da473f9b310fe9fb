package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// names is n distinct field names, joined by sep.
func names(n int, prefix, sep string) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return strings.Join(s, sep)
}

// TestHopNamesCapped: a request may list at most 32 names in Connection
// and announce at most 32 trailer fields; more get 400 and never reach the
// backend, as each name cost a pass over all the head's fields: a head of
// many fields listing many names took seconds of CPU (found by review:
// 0.7 s at 64 KiB, 30 s at 256 KiB). 32 are served, as is a head of
// thousands of fields that lists none.
func TestHopNamesCapped(t *testing.T) {
	b := startSmuggleBackend(t)
	px := startProxy(t, fmt.Sprintf("limits: { max_header_bytes: 65536 }\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n", b.ln.Addr()))
	many := strings.Repeat("b:\r\n", 8000)
	trailerOf := func(n int) string {
		var sb strings.Builder
		for i := range n {
			fmt.Fprintf(&sb, "t%d: x\r\n", i)
		}
		return sb.String()
	}
	tests := []struct {
		name, raw string
		want      int
	}{
		{"32 Connection names", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: " + names(32, "x-n", ", ") + "\r\n" + many + "\r\n", 200},
		{"33 Connection names", "GET /b HTTP/1.1\r\nHost: x\r\nConnection: " + names(33, "x-n", ",") + "\r\n" + many + "\r\n", 400},
		{"33 names over two Connection fields", "GET /c HTTP/1.1\r\nHost: x\r\nConnection: " + names(20, "x-a", ",") +
			"\r\nConnection: " + names(13, "x-b", ",") + "\r\n\r\n", 400},
		{"32 trailer fields", "POST /d HTTP/1.1\r\nHost: x\r\nTrailer: " + names(32, "t", ", ") +
			"\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n" + trailerOf(32) + "\r\n", 200},
		{"33 trailer fields", "POST /e HTTP/1.1\r\nHost: x\r\nTrailer: " + names(33, "t", ",") +
			"\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n" + trailerOf(33) + "\r\n", 400},
		{"8000 fields, no names", "GET /f HTTP/1.1\r\nHost: x\r\n" + many + "\r\n", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, _, _ := strings.Cut(tt.raw, " ")
			if code, _ := truthSend(t, px.addr, tt.raw, method); code != tt.want {
				t.Errorf("status %d, want %d", code, tt.want)
			}
		})
	}
	_, lines := b.snapshot()
	if got := strings.Join(lines, " "); got != "GET /a POST /d GET /f" {
		t.Errorf("backend got %q, want only the requests served", got)
	}
}
