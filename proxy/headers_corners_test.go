package proxy

// Corners of the proxy's header rewriting in both directions, from a
// review: fields it deletes stay deleted, the rest arrive whole.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

const cornersOK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func cornersProxy(t *testing.T, backend string, extra string) *testProxy {
	t.Helper()
	return startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+backend+" }\n"+extra)
}

// upstreamHead is the part of a raw request the backend got after the
// request line, up to the end of its head.
func upstreamHead(raw string) string {
	_, rest, _ := strings.Cut(raw, "\r\n")
	head, _, _ := strings.Cut(rest, "\r\n\r\n")
	return head + "\r\n"
}

// TestRequestIDForEmptyFirstField: with forwarding.request_id on, a
// request whose first X-Request-Id is empty gets sluice's id in it,
// whether or not the proxy also deletes fields from it.
func TestRequestIDForEmptyFirstField(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	generated := regexp.MustCompile(`(?m)^X-Request-Id: [0-9a-f]{32}\r$`)
	for _, tc := range []struct{ name, req string }{
		{"baseline HTTP/1.0", "GET / HTTP/1.0\r\nHost: example.com\r\nX-Request-Id:\r\nX-Request-Id: chosen\r\n\r\n"},
		{"Connection: close", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Request-Id:\r\nX-Request-Id: chosen\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := rawWire(t, px.addr, tc.req); !strings.HasPrefix(out, "HTTP/1.1 200") {
				t.Fatalf("proxy answered %q", out)
			}
			got := upstreamHead(b.got())
			if !generated.MatchString(got) {
				t.Errorf("the id sluice generated for the empty X-Request-Id did not reach the backend:\n%q", got)
			}
		})
	}
}

// --- coverage: corners checked and found fine -----------------------------

// TestDeletedFieldsStayDeleted: the fields the proxy deletes stay
// deleted though their names repeat (both fields named in Connection,
// Keep-Alive, the X-Forwarded-Proto and -Host copies), the client's two
// X-Forwarded-For become one list with the client last, and the other
// fields arrive whole.
func TestDeletedFieldsStayDeleted(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	req := "POST / HTTP/1.1\r\nHost: example.com\r\nConnection: x-hop, close\r\nX-Hop: h1\r\nAccept: a1\r\n" +
		"X-Forwarded-For: 192.0.2.1\r\nKeep-Alive: k1\r\nX-Forwarded-Proto: https\r\nX-Hop: h2\r\nAccept: a2\r\n" +
		"X-Forwarded-For: 192.0.2.2\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil1\r\nKeep-Alive: k2\r\n" +
		"X-Forwarded-Host: evil2\r\nAccept: a3\r\nContent-Length: 2\r\n\r\nhi"
	if out := rawWire(t, px.addr, req); !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	got := upstreamHead(b.got())
	for _, gone := range []string{"X-Hop", "h1", "h2", "Keep-Alive", "https", "ftp", "evil"} {
		if strings.Contains(got, gone) {
			t.Errorf("%q reached the backend:\n%q", gone, got)
		}
	}
	if strings.Count(got, "X-Forwarded-For:") != 1 || !strings.Contains(got, "X-Forwarded-For: 192.0.2.1, 192.0.2.2, 127.0.0.1\r\n") {
		t.Errorf("X-Forwarded-For upstream not the one merged list:\n%q", got)
	}
	if strings.Count(got, "Accept: a") != 3 {
		t.Errorf("Accept fields lost:\n%q", got)
	}
}

// TestRepeatedExpectDropped: neither of two Expect fields reaches the
// backend (sluice has read the body already), and the rest arrive whole.
func TestRepeatedExpectDropped(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "PUT / HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nVary: 1\r\n"+
		"Expect: 100-continue\r\nVary: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
	if !strings.Contains(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	got := upstreamHead(b.got())
	if strings.Contains(strings.ToLower(got), "expect") {
		t.Errorf("Expect reached the backend:\n%q", got)
	}
	if !strings.Contains(got, "Vary: 1\r\n") || !strings.Contains(got, "Vary: 2\r\n") {
		t.Errorf("Vary lost:\n%q", got)
	}
}

// TestRequestTrailerFieldsDropped: a chunked request whose trailer holds a
// field of a header name is refused; one whose trailer holds new names
// loses them (fasthttp moves the trailer into the headers when Trailer is
// deleted).
func TestRequestTrailerFieldsDropped(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "POST / HTTP/1.1\r\nHost: example.com\r\nVary: 1\r\nTransfer-Encoding: chunked\r\nVary: 2\r\nTrailer: Vary\r\n\r\n"+
		"2\r\nhi\r\n0\r\nVary: evil\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Errorf("trailer repeating a header name: proxy answered %.40q, want 400", out)
	}
	out = rawWire(t, px.addr, "POST / HTTP/1.1\r\nHost: example.com\r\nVary: 1\r\nTransfer-Encoding: chunked\r\nVary: 2\r\nTrailer: X-T\r\nConnection: close\r\n\r\n"+
		"2\r\nhi\r\n0\r\nX-T: evil\r\nX-U: evil\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	got := b.got()
	if strings.Contains(got, "evil") || strings.Contains(strings.ToLower(got), "trailer") {
		t.Errorf("trailer reached the backend:\n%q", got)
	}
	if i, j := strings.Index(got, "Vary: 1"), strings.Index(got, "Vary: 2"); i < 0 || i > j {
		t.Errorf("Vary not in order:\n%q", got)
	}
}

// TestChunkedResponseHopByHopCorners: a chunked response (the general
// path) with a Connection-named field twice, Keep-Alive, two Set-Cookie,
// two Vary and Link, and a trailer: the named and hop-by-hop fields stay
// deleted, the trailer is not merged into the head, the rest arrive.
func TestChunkedResponseHopByHopCorners(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nVary: A\r\nSet-Cookie: a=1\r\nLink: <l1>\r\nKeep-Alive: timeout=5\r\n" +
		"Trailer: X-Tr\r\nX-Hop: 2\r\nSet-Cookie: b=2\r\nVary: B\r\nTransfer-Encoding: chunked\r\nLink: <l2>\r\nServer: up\r\n\r\n" +
		"2\r\nok\r\n0\r\nX-Tr: evil\r\n\r\n"
	b := startRawBackend(t, resp)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	for _, gone := range []string{"X-Hop", "Keep-Alive", "evil", "X-Tr"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q reached the client:\n%q", gone, out)
		}
	}
	for _, field := range []string{"Vary: A", "Vary: B", "Link: <l1>", "Link: <l2>"} {
		if !strings.Contains(out, field+"\r\n") {
			t.Errorf("%q lost:\n%q", field, out)
		}
	}
	// fasthttp keeps cookies in a list of their own: their order holds.
	if i, j := strings.Index(out, "Set-Cookie: a=1\r\n"), strings.Index(out, "Set-Cookie: b=2\r\n"); i < 0 || j < 0 || i > j {
		t.Errorf("Set-Cookie fields not both there in order:\n%q", out)
	}
}

// TestRetryCarriesSameFields: a request retried on another backend
// carries the same fields as its first attempt, without the deleted ones.
func TestRetryCarriesSameFields(t *testing.T) {
	var mu sync.Mutex
	var heads []string
	record := func(c net.Conn) bool {
		var rec bytes.Buffer
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(io.TeeReader(c, &rec))); err != nil {
			return false
		}
		mu.Lock()
		heads = append(heads, upstreamHead(rec.String()))
		mu.Unlock()
		return true
	}
	reset := serveRaw(t, func(c net.Conn) {
		if record(c) {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
	})
	good := serveRaw(t, func(c net.Conn) {
		if record(c) {
			_, _ = io.WriteString(c, cornersOK)
		}
	})
	px := startProxy(t, fmt.Sprintf("routes: [{ pool: p }]\npools:\n  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }\nretries: { attempts: 2 }\n", reset.Addr(), good.Addr()))
	for range 2 { // round robin: one of the two starts on the failing backend
		out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nConnection: x-hop, close\r\nHost: example.com\r\nAccept: 1\r\nX-Hop: h\r\nKeep-Alive: 1\r\nAccept: 2\r\nX-Forwarded-For: 192.0.2.9\r\nAccept: 3\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("proxy answered %q", out)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heads) < 3 {
		t.Fatalf("backends got %d requests, want 3 or 4 (at least one retried)", len(heads))
	}
	for _, h := range heads {
		strip := regexp.MustCompile(`(?m)^(Host|X-Request-Id): .*\r\n`).ReplaceAllString(h, "")
		if strip != regexp.MustCompile(`(?m)^(Host|X-Request-Id): .*\r\n`).ReplaceAllString(heads[0], "") {
			t.Errorf("attempts differ:\n%q\n%q", h, heads[0])
		}
		if strings.Contains(h, "X-Hop") || strings.Contains(h, "Keep-Alive") {
			t.Errorf("deleted field upstream:\n%q", h)
		}
		if strings.Count(h, "Accept: ") != 3 {
			t.Errorf("Accept fields lost:\n%q", h)
		}
	}
}

// TestClassifyHeaderFolding: classifyHeader (names by length, case
// folded by one bit) classifies as a scan with bytes.EqualFold over every
// known name does, for each known name with any one byte replaced by any
// byte, and in either case.
func TestClassifyHeaderFolding(t *testing.T) {
	old := func(name, value []byte) headerSet {
		if !isToken(name) {
			return hBadName
		}
		for _, k := range knownHeaders {
			if len(k.name) != len(name) || !bytes.EqualFold(k.name, name) {
				continue
			}
			switch {
			case k.bit == hConnection && namesHeaders(value):
				return hConnection | hConnectionNames
			case k.bit == hTransferEncoding && !bytes.EqualFold(bytes.TrimSpace(value), valueChunked):
				return hTransferEncoding | hBadTE
			}
			return k.bit
		}
		if bit, _ := classifyByScan(name); bit == hForwardedAlias {
			return bit // X_Forwarded_For and the like
		}
		return 0
	}
	for _, k := range knownHeaders {
		for _, v := range [][]byte{nil, []byte("chunked"), []byte("x-a")} {
			for i := range k.name {
				name := bytes.Clone(k.name)
				for c := range 256 {
					name[i] = byte(c)
					if got, want := classifyHeader(name, v), old(name, v); got != want {
						t.Fatalf("classifyHeader(%q, %q) = %b, want %b", name, v, got, want)
					}
				}
			}
			for _, n := range [][]byte{bytes.ToLower(k.name), bytes.ToUpper(k.name)} {
				if got, want := classifyHeader(n, v), old(n, v); got != want || got == 0 {
					t.Fatalf("classifyHeader(%q) = %b, want %b", n, got, want)
				}
			}
		}
	}
}

// TestFoldedConnectionNamesField: a folded Connection value still names
// its field, which stays deleted; a folded value of another field arrives
// as fasthttp joined it.
func TestFoldedConnectionNamesField(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close,\r\n x-hop\r\nAccept: a1,\r\n a1b\r\nX-Hop: 1\r\n"+
		"X-Hop: 2\r\nAccept: a2\r\nX-Z: z\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("proxy answered %q", out)
	}
	got := upstreamHead(b.got())
	if strings.Contains(got, "X-Hop") {
		t.Errorf("X-Hop named in a folded Connection reached the backend:\n%q", got)
	}
	if !strings.Contains(got, "Accept: a2\r\n") || !strings.Contains(got, "a1b") {
		t.Errorf("Accept fields not whole:\n%q", got)
	}
}
