package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// Corners of readPlainHead (plainhead.go) against the general path
// (fasthttp's ResponseHeader.Read, then the handler's scanResponse,
// badResponse, dropTrailers and stripHopByHop), from a review.

// TestPlainContentLengthFitsInt: a Content-Length readPlainHead takes is
// the one the backend sent. Where an int has 32 bits (GOARCH=arm), 15
// digits wrapped around: "4294967298" became 2 (found by review, shown
// under qemu-arm); longer ones are left to fasthttp's parser, which
// refuses them.
func TestPlainContentLengthFitsInt(t *testing.T) {
	for _, cl := range []string{"4294967298", "2147483648", "12345678901", "999999999999999"} {
		var h fasthttp.ResponseHeader
		if !readPlainHead(&h, []byte("HTTP/1.1 200 OK\r\nContent-Length: "+cl+"\r\n\r\n")) {
			continue // left to fasthttp's parser: fine
		}
		if got := strconv.Itoa(h.ContentLength()); got != cl {
			t.Errorf("Content-Length: %s read as plain with length %s", cl, got)
		}
	}
}

// TestPlainContentLengthOverflow: what the wrap-around above did end to
// end on a 32-bit build: a 4294967298-byte body passed on as a complete
// 2-byte 200, the upstream connection reused, and the rest of that body
// read as another client's answer. Neither may happen.
func TestPlainContentLengthOverflow(t *testing.T) {
	ln := serveRaw(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		var req fasthttp.Request
		if err := req.Read(r); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4294967298\r\n\r\nok"); err != nil {
			return
		}
		// More of the same body, sent when the connection next carries a
		// request (so netconn's idle check cannot see it early).
		req.Reset()
		if err := req.Read(r); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPWNED!")
	})
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ln.Addr().String()+" }\n")
	first := rawWire(t, px.addr, "GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	second := rawWire(t, px.addr, "GET /b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	if strings.HasPrefix(first, "HTTP/1.1 200") {
		t.Errorf("a 4294967298-byte body was passed on as a complete 200:\n%q", first)
	}
	if strings.Contains(second, "PWNED!") {
		t.Errorf("the second client got bytes of the first answer's body as its response:\n%q", second)
	}
}

// fieldOrderHead has a hop-by-hop field before two fields with the same
// name and a field between them. RFC 9110 §5.3 says a proxy MUST NOT
// change the order of field lines with the same name (Vary, Link,
// Cache-Control, WWW-Authenticate...).
const fieldOrderHead = "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nVary: Accept\r\nX-Mid: 1\r\nVary: Origin\r\n"

// TestPlainHeadFieldOrder: with a hop-by-hop field before two fields of
// one name, readPlainHead and the general path pass on the same fields.
func TestPlainHeadFieldOrder(t *testing.T) {
	head := []byte(fieldOrderHead + "Content-Length: 2\r\n\r\n")
	got, _, _, _, plain := passedOnPlain(head, true)
	if !plain {
		t.Fatal("head not plain: the test would not cover readPlainHead")
	}
	want, _, _, _, ok := passedOnByParser(head, true)
	if !ok {
		t.Fatal("the parser refuses the head")
	}
	if !sameHead(got, want) {
		t.Errorf("plain read passes on\n%q\nthe general path\n%q", got, want)
	}
}

// TestPlainHeadFieldOrderEndToEnd: a client receives a plain head's
// same-name fields in the backend's order (RFC 9110 §5.3), whatever
// hop-by-hop field came before them. (The general path does not promise
// it: README, Forwarding.)
func TestPlainHeadFieldOrderEndToEnd(t *testing.T) {
	b := startRawBackend(t, fieldOrderHead+"Content-Length: 2\r\n\r\nok")
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
	out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	i, j := strings.Index(out, "Vary: Accept\r\n"), strings.Index(out, "Vary: Origin\r\n")
	if i < 0 || j < 0 || strings.Contains(out, "Keep-Alive") {
		t.Fatalf("unexpected answer %q", out)
	}
	if i > j {
		t.Errorf("same-name fields reordered on the way through:\n%q", out)
	}
}

// TestPlainConnectionTokensTrimLikeFasthttp: a Connection token is
// trimmed of spaces and tabs only, as fasthttp trims it: with Unicode
// spaces trimmed too (bytes.TrimSpace), " close" closed the upstream
// connection where the general path kept it (found by review).
func TestPlainConnectionTokensTrimLikeFasthttp(t *testing.T) {
	for _, v := range []string{"\u00a0close", "close\u00a0", "keep-alive, close\u0085"} {
		head := []byte("HTTP/1.1 200 OK\r\nConnection: " + v + "\r\nContent-Length: 2\r\n\r\n")
		got, _, _, close, plain := passedOnPlain(head, true)
		if !plain {
			continue
		}
		want, _, _, wantClose, ok := passedOnByParser(head, true)
		if !ok || !sameHead(got, want) || close != wantClose {
			t.Errorf("Connection: %q: plain close=%v, general path close=%v", v, close, wantClose)
		}
	}
}

// TestPlainHeadKeepsHeaderFlags: readPlainHead keeps a header's
// DisableNormalizing, as ResponseHeader.Read does (its h.Reset cleared
// it; sluice's front end does not set it today).
func TestPlainHeadKeepsHeaderFlags(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nx-lower-case: 1\r\nContent-Length: 2\r\n\r\n"
	var plain, parsed fasthttp.ResponseHeader
	plain.DisableNormalizing()
	parsed.DisableNormalizing()
	if !readPlainHead(&plain, []byte(head)) {
		t.Fatal("head not plain")
	}
	if err := parsed.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
		t.Fatal(err)
	}
	got, want := withoutDate(plain.AppendBytes(nil)), withoutDate(parsed.AppendBytes(nil))
	if !bytes.Equal(got, want) {
		t.Errorf("with DisableNormalizing: plain\n%q\nparser\n%q", got, want)
	}
}

// TestPlainHeadAfterEarlyHintsWithSticky: a 103 that set Server,
// Content-Type, Content-Encoding, Set-Cookie, Trailer and Connection in
// the same ResponseHeader leaves none of them behind on a plain final
// head; NoDefaultContentType stays set; the backend's Set-Cookie and the
// sticky cookie added after it both reach the client, whose connection
// stays open.
func TestPlainHeadAfterEarlyHintsWithSticky(t *testing.T) {
	const final = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\n"
	if !readPlainHead(new(fasthttp.ResponseHeader), []byte(final)) {
		t.Fatal("final head not plain")
	}
	b := startRawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nServer: hint\r\nContent-Type: text/hint\r\n"+
		"Content-Encoding: br\r\nSet-Cookie: hint=1\r\nTrailer: Server\r\nConnection: close\r\n\r\n"+final+"ok")
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    sticky: { cookie: aff }\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
	c, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var head []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%v after %q", err, head)
		}
		head = append(head, line)
		if line == "\r\n" && !strings.HasPrefix(head[0], "HTTP/1.1 103") {
			break
		}
		if line == "\r\n" {
			head = head[:0] // the 103, passed on; the final answer follows
		}
	}
	all := strings.Join(head, "")
	body := make([]byte, 2)
	if _, err := io.ReadFull(br, body); err != nil || string(body) != "ok" {
		t.Fatalf("body %q, %v; head %q", body, err, all)
	}
	for _, bad := range []string{"hint", "Content-Type", "Content-Encoding", "Link", "Trailer", "Connection"} {
		if strings.Contains(all, bad) {
			t.Errorf("final answer carries %q from the 103 or the backend's close:\n%q", bad, all)
		}
	}
	if !strings.Contains(all, "Set-Cookie: a=1\r\n") || !strings.Contains(all, "Set-Cookie: aff=") ||
		!strings.Contains(all, "X-Final: yes\r\n") || !strings.Contains(all, "Content-Length: 2\r\n") {
		t.Errorf("final answer lost a field:\n%q", all)
	}
}
