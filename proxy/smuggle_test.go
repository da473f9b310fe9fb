package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// smuggleBackend is a raw TCP backend that records every byte it gets on
// each connection and answers each request it can parse with a fixed 200.
type smuggleBackend struct {
	ln    net.Listener
	mu    sync.Mutex
	raw   []*bytes.Buffer // per connection
	lines []string        // request lines parsed, in order
}

func startSmuggleBackend(t *testing.T) *smuggleBackend {
	t.Helper()
	b := &smuggleBackend{}
	b.ln = serveRaw(t, func(c net.Conn) {
		rec := &lockedBuf{b: b}
		b.mu.Lock()
		b.raw = append(b.raw, &rec.buf)
		b.mu.Unlock()
		br := bufio.NewReader(io.TeeReader(c, rec))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				// Keep recording whatever else arrives.
				_, _ = io.Copy(io.Discard, br)
				return
			}
			_, berr := io.Copy(io.Discard, req.Body)
			b.mu.Lock()
			b.lines = append(b.lines, req.Method+" "+req.RequestURI)
			b.mu.Unlock()
			if berr != nil {
				_, _ = io.Copy(io.Discard, br)
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return b
}

type lockedBuf struct {
	b   *smuggleBackend
	buf bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	return l.buf.Write(p)
}

// sendThroughSmuggle starts a smuggleBackend and a sluice in front of it,
// and writes raw on a new connection to sluice.
func sendThroughSmuggle(t *testing.T, raw string) (*smuggleBackend, net.Conn, *bufio.Reader) {
	t.Helper()
	be := startSmuggleBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: be.ln}}}, nil))
	c, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return be, c, br
}

func (b *smuggleBackend) snapshot() (raw string, lines []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for i, r := range b.raw {
		if i > 0 {
			s.WriteString(" | ")
		}
		s.Write(r.Bytes())
	}
	return s.String(), slices.Clone(b.lines)
}

// TestSmugglingVectors: each request goes on a fresh connection with an
// innocent request pipelined behind it. A malformed one gets its 4xx and
// nothing reaches the backend; an accepted one reaches it with the same
// meaning, and the backend never sees a request line sluice did not
// answer 200 for.
func TestSmugglingVectors(t *testing.T) {
	const second = "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
	const h = "POST / HTTP/1.1\r\nHost: x\r\n"
	both := []string{"POST /", "GET /second"}
	tests := []struct {
		name  string
		raw   string
		codes []int    // acceptable status of the first answer
		lines []string // the backend's request lines, in order, when the first answer is 200
	}{
		// No vector behaved wrongly at review 14; every one here is
		// coverage that no other test asserts end to end.
		{"two equal Content-Length", h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", []int{400}, nil},
		{"Content-Length: 1, 1", h + "Content-Length: 1, 1\r\n\r\na", []int{400}, nil},
		{"TE chunked, identity", h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE identity, chunked", h + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE leading space", h + "Transfer-Encoding:  chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200}, both},
		{"TE xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE chunked tab", h + "Transfer-Encoding: chunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200}, both},
		{"TE CHUNKED", h + "Transfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200}, both},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"TE and CL on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk extension", h + "Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", []int{200}, both},
		{"chunk extension quoted", h + "Transfer-Encoding: chunked\r\n\r\n3;a=\"x\"\r\nabc\r\n0;b\r\n\r\n", []int{200}, both},
		{"chunk size overflow", h + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size 17 f", h + "Transfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size negative", h + "Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size 0x", h + "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size 0x10", h + "Transfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size leading space", h + "Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk data longer than size", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk bare LF after data", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n", []int{400}, nil},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", []int{400}, nil},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", []int{400}, nil},
		{"space before colon, CL", h + "Content-Length : 3\r\n\r\nabc", []int{400}, nil},
		{"space before colon, TE", h + "Content-Length: 3\r\nTransfer-Encoding : chunked\r\n\r\nabc", []int{400}, nil},
		{"tab before colon, X", "GET / HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n", []int{400}, nil},
		{"obs-fold TE", h + "Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n", []int{400}, nil},
		{"obs-fold TE empty first", h + "Transfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"obs-fold CL", h + "Content-Length:\r\n 3\r\n\r\nabc", []int{400, 200}, both}, // fold replaced by SP (RFC 9112 §5.2 allows it)
		{"obs-fold after CL", h + "Content-Length: 3\r\n 4\r\n\r\nabc", []int{400}, nil},
		{"obs-fold X header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", []int{400, 200}, []string{"GET /", "GET /second"}},
		{"body holds request, CL short", h + "Content-Length: 4\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []int{200}, []string{"POST /"}},
		{"body holds request, chunk bad", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, nil},
		{"pipelined after CL 0 (legitimate)", h + "Content-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", []int{200}, []string{"POST /", "GET /smuggled"}},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", []int{400}, nil},
		{"two Host headers, equal", "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", []int{400}, nil},
		{"no Host on 1.1", "GET / HTTP/1.1\r\n\r\n", []int{400}, nil},
		{"Connection: Content-Length", h + "Connection: Content-Length\r\nContent-Length: 3\r\n\r\nabc", []int{200, 400}, both},
		{"Connection: Transfer-Encoding", h + "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200, 400}, both},
		{"Connection: Host", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Host\r\n\r\n", []int{200, 400}, []string{"GET /", "GET /second"}},
		{"absolute-form, other Host, 1.0", "GET http://a.example/p HTTP/1.0\r\nHost: b.example\r\n\r\n", []int{200}, []string{"GET /p"}},

		{"TE NBSP chunked", h + "Transfer-Encoding: \xc2\xa0chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE chunked NEL", h + "Transfer-Encoding: chunked\xc2\x85\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE form feed", h + "Transfer-Encoding: \x0cchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE chunked VT", h + "Transfer-Encoding: chunked\x0b\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE NBSP chunked, CL", h + "Content-Length: 3\r\nTransfer-Encoding: \xc2\xa0chunked\r\n\r\nabc", []int{400, 501}, nil},
		{"CL NBSP", h + "Content-Length: \xc2\xa03\r\n\r\nabc", []int{400}, nil},
		{"CL VT", h + "Content-Length: 3\x0b\r\n\r\nabc", []int{400}, nil},
		{"TE name bare CR", h + "Transfer-Encoding\r: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"fold TE chunked then identity", h + "Transfer-Encoding: chunked\r\n identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"fold TE chunked then empty", h + "Transfer-Encoding: chunked\r\n \r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 200}, both},
		{"fold TE chunked then comma chunked", h + "Transfer-Encoding: chunked\r\n\t,chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"fold hides TE in X, CL", h + "X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", []int{400, 200}, both},
		{"fold Host", "GET / HTTP/1.1\r\nHost: x\r\n evil\r\n\r\n", []int{400}, nil},
		{"fold Connection CL", h + "Connection: keep-alive\r\n Content-Length\r\nContent-Length: 3\r\n\r\nabc", []int{400, 200}, both},
		{"CL plus sign", h + "Content-Length: +3\r\n\r\nabc", []int{400}, nil},
		{"CL empty", h + "Content-Length: \r\n\r\n", []int{400}, nil},
		{"CL huge", h + "Content-Length: 99999999999999999999999\r\n\r\nabc", []int{400, 413}, nil},
		{"CL hex", h + "Content-Length: 0x3\r\n\r\nabc", []int{400}, nil},
		{"CL trailing junk", h + "Content-Length: 3x\r\n\r\nabc", []int{400}, nil},
		{"CL space inside", h + "Content-Length: 1 2\r\n\r\nabc", []int{400}, nil},
		{"two TE headers", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 200}, both},
		{"TE chunked, chunked", h + "Transfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"TE empty", h + "Transfer-Encoding: \r\n\r\n", []int{400}, nil},
		{"TE gzip, chunked", h + "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE chunked with param", h + "Transfer-Encoding: chunked;q=1\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400, 501}, nil},
		{"TE vertical tab", h + "Transfer-Encoding: \x0bchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"trailer Content-Length", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 50\r\n\r\n", []int{400, 200}, both},
		{"trailer Transfer-Encoding", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", []int{400, 200}, both},
		{"trailer Host", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nHost: evil\r\n\r\n", []int{400, 200}, both},
		{"trailer Connection close", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nConnection: close\r\n\r\n", []int{400, 200}, both},
		{"trailer bare CR", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: a\rb\r\n\r\n", []int{400}, nil},
		{"trailer no colon", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGET /smuggled HTTP/1.1\r\n\r\n", []int{400}, nil},
		{"chunk ext bare CR", h + "Transfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk ext bare LF", h + "Transfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size bare LF", h + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", []int{400}, nil},
		{"chunk size trailing space", h + "Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", []int{400, 200}, both},
		{"last chunk 00", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n00\r\n\r\n", []int{200}, both},
		{"Host with space", "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", []int{400}, nil},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", []int{400}, nil},
		{"request line tab", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, nil},
		{"request line two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, nil},
		{"request line trailing space", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", []int{400}, nil},
		{"target with space", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, nil},
		{"HTTP/0.9", "GET /\r\n\r\n", []int{400}, nil},
		{"version HTTP/1.10", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", []int{400, 505}, nil},
		{"lowercase version", "GET / http/1.1\r\nHost: x\r\n\r\n", []int{400, 505}, nil},
		{"header name empty", "GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", []int{400}, nil},
		{"header name NUL", "GET / HTTP/1.1\r\nHost: x\r\nX\x00A: a\r\n\r\n", []int{400}, nil},
		{"first header folded", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", []int{400}, nil},
		{"Connection: close, Content-Length", h + "Connection: keep-alive, Content-Length\r\nContent-Length: 3\r\n\r\nabc", []int{200, 400}, both},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each has its own backend and sluice
			be, c, br := sendThroughSmuggle(t, tt.raw+second)
			var codes []int
			for i := 0; ; i++ {
				if i > 0 {
					_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)) // no more answers
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					var ne net.Error
					if i == 0 {
						if errors.As(err, &ne) && ne.Timeout() {
							t.Fatalf("no answer within 5 s (hang)")
						}
						t.Fatalf("first answer: %v", err)
					}
					break
				}
				_, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				codes = append(codes, resp.StatusCode)
				if resp.Close {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
			raw, lines := be.snapshot()
			if !slices.Contains(tt.codes, codes[0]) {
				t.Errorf("first answer %d, want one of %v (answers %v)", codes[0], tt.codes, codes)
			}
			if codes[0] >= 400 {
				if raw != "" {
					t.Errorf("answered %v, yet the backend got %q; want nothing", codes, raw)
				}
				return
			}
			if !slices.Equal(lines, tt.lines) {
				t.Errorf("backend request lines %q, want %q (answers %v, backend bytes %q)", lines, tt.lines, codes, raw)
			}
			ok := 0
			for _, code := range codes {
				if code == 200 {
					ok++
				}
			}
			if ok != len(lines) {
				t.Errorf("client got %d answers of 200 (%v) but the backend parsed %d requests %q", ok, codes, len(lines), lines)
			}
		})
	}
}
