package proxy

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: a chunked request's trailer field reaches the backend as a header
// when its name appears in the head only inside an obs-fold continuation
// line (" X-Foo: b", part of the X-A field above it). README (Forwarding):
// "Trailer fields of a chunked message are dropped, in both directions ...
// A request whose trailer repeats one of its header names gets 400";
// here "X-Foo: evil" from the trailer section is forwarded as a header
// field (the very merge RFC 9110 §6.5.1 forbids and the README says a
// filter in front of sluice never looks at). nginx drops it. Cause:
// countFields (proxy/headers.go) counts every raw line with a colon,
// folded continuation lines included, so the folded " X-Foo: b" counts as
// an X-Foo header field; dropTrailers then finds PeekAll("X-Foo") (1: the
// trailer's) not above that count and keeps the name. Before session 22,
// hasField made the same miscount but refused (400), so this is new.
func TestFoldedLineHidesNoRequestTrailer(t *testing.T) {
	for _, tt := range []struct{ name, head string }{
		{"announced", "X-A: a\r\n X-Foo: b\r\nTrailer: X-Foo\r\n"},
		{"not announced", "X-A: a\r\n X-Foo: b\r\n"},
		{"beside a real header", "X-Foo: a\r\nX-A: a\r\n X-Foo: b\r\nTrailer: X-Foo\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, cornersOK)
			px := cornersProxy(t, b.ln.Addr().String(), "")
			out := rawWire(t, px.addr, "POST /up HTTP/1.1\r\nHost: example.com\r\n"+tt.head+
				"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Foo: evil\r\n\r\n")
			if got := b.got(); strings.Contains(got, "evil") {
				t.Fatalf("the trailer field reached the backend as a header (proxy answered %.20q):\n%q", out, upstreamHead(got))
			}
		})
	}
}

// TestRequestTrailerRepeatsStillRefused: since a Trailer that only announces a
// header's name is no longer refused (dropTrailers counts the fields),
// a trailer that does repeat a header is still 400, whatever the case of
// the names, however often Trailer announces it, and with several or
// empty header lines of that name; the backend gets nothing.
func TestRequestTrailerRepeatsStillRefused(t *testing.T) {
	for _, tt := range []struct{ name, head, trailer string }{
		{"case variations", "X-FOO: a\r\nTrailer: x-foo\r\n", "x-Foo: evil\r\n"},
		{"announced twice", "X-Foo: a\r\nTrailer: X-Foo, x-foo\r\nTrailer: X-FOO\r\n", "X-Foo: evil\r\n"},
		{"two header lines", "X-Foo: a\r\nX-Foo: b\r\nTrailer: X-Foo\r\n", "X-Foo: evil\r\n"},
		{"empty header value", "X-Foo:\r\nTrailer: X-Foo\r\n", "X-Foo: evil\r\n"},
		{"two trailer lines", "X-Foo: a\r\nTrailer: X-Foo\r\n", "X-Foo: evil\r\nX-Foo: evil2\r\n"},
		{"not announced", "X-Foo: a\r\n", "x-foo: evil\r\n"},
		{"User-Agent", "User-Agent: a\r\nTrailer: User-Agent\r\n", "User-Agent: evil\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, cornersOK)
			px := cornersProxy(t, b.ln.Addr().String(), "")
			out := rawWire(t, px.addr, "POST /up HTTP/1.1\r\nHost: example.com\r\n"+tt.head+
				"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n"+tt.trailer+"\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 400") || !strings.Contains(out, "a trailer field repeats a header field") {
				t.Errorf("proxy answered %q, want 400 for the repeat", out)
			}
			if got := b.got(); got != "" {
				t.Errorf("backend got %q", got)
			}
		})
	}
}
