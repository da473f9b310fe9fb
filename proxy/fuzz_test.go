package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzStripHopByHop: whatever a client puts in Connection, stripping never
// panics and leaves none of the headers it named, nor any fixed hop-by-hop
// header, while other headers survive.
func FuzzStripHopByHop(f *testing.F) {
	for _, s := range []string{"close", "keep-alive, X-Foo", "X-Forwarded-For", ",,, ,", "Upgrade, te", "x-a,X-A , x-b"} {
		f.Add(s, "X-Foo")
	}
	f.Fuzz(func(t *testing.T, connection, other string) {
		var h fasthttp.RequestHeader
		h.Set("Connection", connection)
		h.Set("Keep-Alive", "300")
		h.Set("Transfer-Encoding", "chunked")
		h.Set("X-Survivor", "yes")
		if other != "" {
			h.Set(other, "v")
		}
		stripHopByHop(&h, nil)
		for _, name := range hopByHop {
			if len(h.PeekBytes(name)) != 0 {
				t.Fatalf("hop-by-hop %s left after strip (Connection: %q)", name, connection)
			}
		}
		named := map[string]bool{}
		for tok := range strings.SplitSeq(connection, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || strings.EqualFold(tok, "close") || strings.EqualFold(tok, "keep-alive") {
				continue
			}
			named[strings.ToLower(tok)] = true
			if len(h.Peek(tok)) != 0 {
				t.Fatalf("header %q named in Connection survived", tok)
			}
		}
		if !named["x-survivor"] && string(h.Peek("X-Survivor")) != "yes" {
			t.Fatalf("unrelated header removed (Connection: %q)", connection)
		}
	})
}

// FuzzNormalizeHost: never panics, never returns upper case or a port.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"Example.COM:8080", "[::1]:80", "a.b.", "", ":", "[", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		var buf [256]byte
		got := normalizeHost([]byte(host), buf[:])
		if len(host) <= len(buf) && bytes.ContainsAny(got, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("normalizeHost(%q) = %q has upper case", host, got)
		}
		if len(got) > len(host) {
			t.Fatalf("normalizeHost(%q) = %q grew", host, got)
		}
	})
}

// FuzzQueryValue: the hash-key query parser never panics and only ever
// returns a value that was in the query after name=.
func FuzzQueryValue(f *testing.F) {
	f.Add("a=1&uid=42&b", "uid")
	f.Add("uid", "uid")
	f.Add("&&=&", "")
	f.Fuzz(func(t *testing.T, query, name string) {
		v := queryValue([]byte(query), []byte(name))
		if v != nil && !strings.Contains(query, name+"="+string(v)) {
			t.Fatalf("queryValue(%q, %q) = %q, not in the query", query, name, v)
		}
	})
}

// FuzzSmuggled: agrees with a plain line-by-line reading of the headers.
func FuzzSmuggled(f *testing.F) {
	f.Add("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n")
	f.Add("content-length:1\ntransfer-encoding:x")
	f.Add("X: y\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		var cl, te bool
		for _, line := range strings.Split(raw, "\n") {
			l := strings.ToLower(line)
			cl = cl || strings.HasPrefix(l, "content-length:")
			te = te || strings.HasPrefix(l, "transfer-encoding:")
		}
		if got := smuggled([]byte(raw)); got != (cl && te) {
			t.Fatalf("smuggled(%q) = %v, want %v", raw, got, cl && te)
		}
	})
}
