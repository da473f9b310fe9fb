package proxy

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: a chunked request whose Trailer field announces a name that is
// also a header field of the request ("Trailer: X-Checksum" beside
// "X-Checksum: abc") gets "400 a trailer field repeats a header field"
// even when its trailer section is empty ("0\r\n\r\n") and so repeats
// nothing. README (Forwarding): "Trailer fields of a chunked message are
// dropped ... A request whose trailer repeats one of its header names
// gets 400" (and the 400 row: "a trailer field repeating a header
// field"); RFC 9110 §6.6.2 makes Trailer only a hint of what may follow
// the body. nginx forwards this request (the header field kept, the
// Trailer field and the empty trailer section dropped). The response
// side had the same mistake and was fixed
// (TestAnnouncedTrailerKeepsHeaderField). Cause: dropTrailers
// (proxy/headers.go) refuses as soon as a name that Trailer announces
// (h.Trailers()) is in the raw head (hasField), without looking at
// whether any trailer field of that name arrived; fasthttp moves the
// header's value into its trailer store when the name is announced, so
// the values can only be told apart by counting them.
func TestRequestAnnouncedTrailerWithoutTrailerForwarded(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "POST /up HTTP/1.1\r\nHost: example.com\r\n"+
		"X-Checksum: abc\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n0\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("no trailer came, so none repeats a header: proxy answered %.60q, want the backend's 200", out)
	}
	got := b.got()
	if !strings.Contains(upstreamHead(got), "X-Checksum: abc\r\n") || !strings.HasSuffix(got, "\r\n\r\nhello") {
		t.Errorf("backend got %q, want the X-Checksum header field and the body", got)
	}
}
