package proxy

import (
	"strings"
	"testing"
)

// fieldValues returns the values of every field line named name (any
// case) in the head of raw, a whole answer, in order.
func fieldValues(raw, name string) []string {
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	var vals []string
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			vals = append(vals, strings.TrimSpace(v))
		}
	}
	return vals
}

// TestContentEncodingLinesKept: a backend that sends its
// codings on two Content-Encoding lines (an application sets one, a
// middleware adds another) must have both reach the client, in order, as
// two lines or joined into one list.
//
// Before the fix (found by review): the client gets "Content-Encoding: br" alone; the "gzip" line is
// dropped, so a client undoes br and hands the application gzip bytes as
// if they were the representation. Content-Encoding is a list-based field
// (RFC 9110 §8.4); RFC 9110 §5.3 lets a proxy combine its field lines
// into one comma-separated value but not drop any, and nginx, HAProxy and
// Envoy pass both lines as sent. Cause: fasthttp's ResponseHeader keeps
// one contentEncoding slot, which each line overwrites, in its parser
// (parseHeaders, 'c' case) and in SetContentEncodingBytes; readPlainHead
// (plainhead.go, fieldContentEncoding) calls SetContentEncodingBytes per
// line, so both the plain path (Content-Length) and fasthttp's path
// (chunked) lose all but the last. Fix: in readPlainHead, on a second
// Content-Encoding, append ", "+value to the one set (or report the head
// not plain); for heads fasthttp reads, look for repeated
// Content-Encoding lines in the raw head (readResponse has it, as
// lengthFields does) and set the joined list after the read.
func TestContentEncodingLinesKept(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"content-length (plain head)", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nok"},
		{"chunked (fasthttp's parser)", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{"head with another field between", "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nX-Between: 1\r\ncontent-encoding: br\r\nContent-Length: 2\r\n\r\nok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, tt.give)
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "\r\n\r\nok") {
				t.Fatalf("proxy answered %q, want the backend's 200 with body ok", out)
			}
			got := strings.Join(fieldValues(out, "Content-Encoding"), ", ")
			if got != "gzip, br" {
				t.Errorf("Content-Encoding the client got = %q, want %q (answer %q)", got, "gzip, br", out)
			}
		})
	}
}

// FuzzRepeatedContentEncoding: any head a backend sends is scanned without
// a panic; a list comes back exactly when two or more Content-Encoding
// lines follow the status line, with every value in it, in order.
func FuzzRepeatedContentEncoding(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nX: 1\r\ncontent-encoding : br\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\nContent-Encoding: gzip\n\tdeflate\nContent-Encoding: br\n\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		got := repeatedContentEncoding(head)
		lines := 0
		var want []string
		for i, line := range strings.Split(string(head), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if i == 0 || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			if isField([]byte(line), strContentEncoding) {
				lines++
				_, v, _ := strings.Cut(line, ":")
				want = append(want, strings.Trim(v, " \t"))
			}
		}
		if (got != nil) != (lines >= 2) {
			t.Fatalf("%q: %d Content-Encoding lines, list %q", head, lines, got)
		}
		rest := string(got)
		for _, v := range want {
			i := strings.Index(rest, v)
			if got != nil && i < 0 {
				t.Fatalf("%q: list %q lacks %q in order", head, got, v)
			}
			if i >= 0 {
				rest = rest[i+len(v):]
			}
		}
	})
}
