package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestRequestFieldOrderEndToEnd: fields of one name reach the backend in
// the client's order though the proxy deletes fields before and between
// them (hop-by-hop, Expect, forwarding headers): fasthttp's DelBytes
// fills a deleted field's place with the last field, which put the
// client's second Accept before its first.
func TestRequestFieldOrderEndToEnd(t *testing.T) {
	b := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
	out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, close\r\nKeep-Alive: 5\r\n"+
		"Accept: text/html\r\nX-Forwarded-Proto: https\r\nCache-Control: no-cache\r\nX-Mid: 1\r\nAccept: */*\r\nCache-Control: max-age=0\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	got := b.got()
	for _, pair := range [][2]string{{"Accept: text/html", "Accept: */*"}, {"Cache-Control: no-cache", "Cache-Control: max-age=0"}} {
		i, j := strings.Index(got, pair[0]+"\r\n"), strings.Index(got, pair[1]+"\r\n")
		if i < 0 || j < 0 || i > j {
			t.Errorf("%q and %q not in the client's order upstream:\n%q", pair[0], pair[1], got)
		}
	}
	if strings.Contains(got, "Keep-Alive") || strings.Contains(got, "https") {
		t.Errorf("a field the proxy deletes reached the backend:\n%q", got)
	}
}

// FuzzFieldOrder: whatever fields a response has and whichever names are
// deleted, fieldOrder leaves the fields of every other name in their first
// order, and all of them there.
func FuzzFieldOrder(f *testing.F) {
	f.Add([]byte("abcabcdd"), []byte("a"))
	f.Add([]byte("xvyvzv"), []byte("xz"))
	f.Add([]byte("aaaaab"), []byte("b"))
	f.Fuzz(func(t *testing.T, fields, deleted []byte) {
		if len(fields) > 40 {
			return
		}
		// Field i is named X-<letter> with value i.
		name := func(c byte) []byte { return []byte(fmt.Sprintf("X-%c", 'A'+c%6)) }
		var h fasthttp.ResponseHeader
		for i, c := range fields {
			h.AddBytesKV(name(c), []byte(fmt.Sprint(i)))
		}
		want := map[string][]string{}
		for k, v := range h.All() {
			want[string(k)] = append(want[string(k)], string(v))
		}
		var o fieldOrder
		o.noteResponse(&h)
		for _, c := range deleted {
			h.DelBytes(name(c))
			delete(want, string(name(c)))
		}
		o.restore(&h)
		got := map[string][]string{}
		for k, v := range h.All() {
			got[string(k)] = append(got[string(k)], string(v))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("fields %v, %q deleted: got %v, want %v", fields, deleted, got, want)
		}
	})
}
