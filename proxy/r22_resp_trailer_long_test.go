package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a chunked answer whose head has a Trailer field gets 502 when one
// trailer line is over 4 KiB, though its trailer section is far under
// the 16 KiB README (Forwarding) allows ("A trailer section over 16 KiB
// gets 502"); the same answer without the Trailer field (or the same line
// in a head without it) is passed on, and nginx passes both. Cause: a head
// with Trailer (or in bare LFs) is read through fixedReader
// (proxy/upclient.go:538), whose bufio.Reader is max(len(head)+1, 4096)
// bytes, and skipTrailer (upclient.go:303) reads each trailer line with
// ReadSlice, which fails with bufio.ErrBufferFull on a line longer than
// that buffer; the plain path reads from the 16 KiB upstream reader. The
// trailer section is exactly what a Trailer field announces, so the
// answers most likely to carry one are the ones refused.
func TestResponseTrailerLineOver4KiB(t *testing.T) {
	line := "X-T: " + strings.Repeat("a", 5000) + "\r\n"
	for _, tt := range []struct{ name, resp string }{
		{"not announced (control)", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + line + "\r\n"},
		{"announced", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + line + "\r\n"},
		{"bare-LF head", "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\r\nhello\r\n0\r\n" + line + "\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := hbBackend(t, func(c net.Conn, _ string) bool { return write(c, tt.resp) })
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			if a := hbDo(c, br, "GET", "/bad"); a.err != nil || a.status != 200 || a.body != "hello" {
				t.Fatalf("a %d-byte trailer section: got %d %.40q %v; want the backend's 200 %q", len(line)+2, a.status, a.body, a.err, "hello")
			}
			hbCheckGood(t, c, br, 1)
		})
	}
}

// TestTrailerAnswerInPiecesKeepsConnection: an answer whose head
// has a Trailer field keeps its upstream connection also when it arrives
// in several reads, or has no body (HEAD, 204), and the next request on
// it gets its own answer.
func TestTrailerAnswerInPiecesKeepsConnection(t *testing.T) {
	for _, tt := range []struct {
		name, method, body string
		status             int
		parts              []string
	}{
		{"chunked, trailer sent, in pieces", "GET", "hello", 200, []string{
			"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n", "2\r\nhe\r\n", "3\r\nllo\r\n0\r\n", "X-T: 1\r\n", "\r\n"}},
		{"Content-Length, in pieces", "GET", "hello", 200, []string{
			"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 5\r\n\r\nhe", "llo"}},
		{"HEAD", "HEAD", "", 200, []string{"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 5\r\n\r\n"}},
		{"204, chunked", "GET", "", 204, []string{"HTTP/1.1 204 No Content\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := hbBackend(t, func(c net.Conn, _ string) bool {
				for _, p := range tt.parts {
					if !write(c, p) {
						return false
					}
					time.Sleep(20 * time.Millisecond)
				}
				return true
			})
			px := hbProxy(t, addr, "2s")
			c, br := dialProxy(t, px.addr)
			if a := hbDo(c, br, tt.method, "/bad"); a.err != nil || a.status != tt.status || a.body != tt.body {
				t.Fatalf("got %d %q %v; want %d %q", a.status, a.body, a.err, tt.status, tt.body)
			}
			hbCheckGood(t, c, br, 2)
			if n := conns.Load(); n != 1 {
				t.Errorf("upstream connections for three requests: %d, want 1", n)
			}
		})
	}
}

// skipTrailer reads lines longer than its reader's buffer in pieces, a CR
// at the end of one piece and the LF starting the next included.
func TestSkipTrailerLongLines(t *testing.T) {
	long := "X-Long: " + strings.Repeat("v", 40)
	for _, tt := range []struct {
		name, in string
		want     error // nil: read through the empty line
		rest     string
	}{
		{"short lines", "A: 1\r\n\r\nnext", nil, "next"},
		{"a line over the buffer", long + "\r\n\r\nnext", nil, "next"},
		{"CR ends a piece", strings.Repeat("v", 15) + "\r\n\r\nnext", nil, "next"},
		{"long line, bare LF", long + "\n\r\nnext", errTrailerBareLF, ""},
		{"over maxTrailer in one line", "X: " + strings.Repeat("v", maxTrailer) + "\r\n\r\n", errTrailerTooLong, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			err := skipTrailer(r)
			if !errors.Is(err, tt.want) || err != nil && tt.want == nil {
				t.Fatalf("skipTrailer = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if rest, _ := io.ReadAll(r); string(rest) != tt.rest {
					t.Errorf("left %q, want %q", rest, tt.rest)
				}
			}
		})
	}
}
