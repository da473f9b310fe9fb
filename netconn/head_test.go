package netconn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// watchReads runs a headWatch over one turn's reads, as Conn.Read does,
// and returns what the reader got and whether a read failed.
func watchReads(reads [][]byte) (got []byte, failed bool) {
	var w headWatch
	w.start()
	for _, r := range reads {
		if w.state == headBare {
			return got, true
		}
		n := len(r)
		if n > 0 && w.state != headOff {
			n = w.scan(r)
		}
		got = append(got, r[:n]...)
	}
	return got, w.state == headBare
}

// splits returns data cut into reads at every pair of positions (one,
// two or three reads).
func splits(data string) [][][]byte {
	var out [][][]byte
	for i := 1; i <= len(data); i++ {
		for j := i; j <= len(data); j++ {
			var reads [][]byte
			for _, part := range []string{data[:i], data[i:j], data[j:]} {
				if part != "" {
					reads = append(reads, []byte(part))
				}
			}
			out = append(out, reads)
		}
	}
	return out
}

// TestHeadWatch: heads that end in a bare LF are cut after their blank
// line and fail the next read; heads fasthttp reads as they are pass
// whole, whatever follows them, however the reads split them, unless the
// request line arrives in more than one read (then nothing is cut).
func TestHeadWatch(t *testing.T) {
	cases := []struct {
		name string
		data string
		bare string // the head up to its bare blank line; "" if none
	}{
		{"CRLF head", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"CRLF head, body of bare LFs", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n", ""},
		{"bare LF inside, CRLF end", "GET / HTTP/1.1\nHost: x\r\n\r\n", ""},
		{"empty block, CRLF", "GET / HTTP/1.0\r\n\r\n", ""},
		{"empty block after a bare-LF request line", "GET / HTTP/1.0\n\r\ntail", ""},
		{"all bare LF", "GET / HTTP/1.1\nHost: x\n\nbody", "GET / HTTP/1.1\nHost: x\n\n"},
		{"bare LF blank line", "GET / HTTP/1.1\r\nHost: x\r\n\n", "GET / HTTP/1.1\r\nHost: x\r\n\n"},
		{"bare LF before a CRLF blank line", "GET / HTTP/1.1\r\nHost: x\n\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\n\r\n"},
		{"empty block, bare LF", "GET / HTTP/1.0\n\n", "GET / HTTP/1.0\n\n"},
		{"not a request line", "get / HTTP/1.1\nHost: x\n\n", ""},
		{"no version", "GET /\n\n", ""},
		{"body that is no head", "hello\n\nworld", ""},
		{"CR CR LF line", "GET / HTTP/1.1\r\nX: a\r\r\n\r\n", ""},
		{"lone CR blank line", "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", ""},
		{"empty lines first", "\r\n\nGET / HTTP/1.1\nHost: x\n\n", "\r\n\nGET / HTTP/1.1\nHost: x\n\n"},
		{"empty lines first, CRLF head", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\n", ""},
		{"CR before the request line", "\rGET / HTTP/1.1\nHost: x\n\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, reads := range splits(tc.data) {
				got, failed := watchReads(reads)
				want, wantFail := tc.data, false
				if tc.bare != "" && lineInOneRead(reads) {
					want, wantFail = tc.bare, true
				}
				if string(got) != want || failed != wantFail {
					t.Fatalf("reads %q: got %q, failed %v; want %q, %v", reads, got, failed, want, wantFail)
				}
			}
		})
	}
}

// firstLine is where the first line of data that is not empty ("" or
// "\r") starts and where its LF is (-1 if it has none), as fasthttp finds
// the request line.
func firstLine(data []byte) (start, lf int) {
	for {
		j := bytes.IndexByte(data[start:], '\n')
		if j < 0 {
			return start, -1
		}
		if j > 1 || j == 1 && data[start] != '\r' {
			return start, start + j
		}
		start += j + 1
	}
}

// lineInOneRead reports whether the first line that is not empty arrives
// whole in one of reads: the watch looks at a head only then.
func lineInOneRead(reads [][]byte) bool {
	var data []byte
	for _, r := range reads {
		data = append(data, r...)
	}
	start, lf := firstLine(data)
	if lf < 0 {
		return false
	}
	end := 0
	for _, r := range reads {
		end += len(r)
		if start < end {
			return lf < end
		}
	}
	return false
}

// errWantMore is what fasthttpWaits' reader returns once its bytes run
// out: reaching it means fasthttp asked for more.
var errWantMore = errors.New("asked for more")

type wantMoreReader struct{ r io.Reader }

func (w wantMoreReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err == io.EOF {
		return n, errWantMore
	}
	return n, err
}

// fasthttpRead is what fasthttp's server makes of head: nil once it has
// read it, an error wrapping errWantMore if it asked for more bytes, any
// other error if it refused it.
func fasthttpRead(head []byte) error {
	var h fasthttp.RequestHeader
	return h.Read(bufio.NewReaderSize(wantMoreReader{bytes.NewReader(head)}, 64<<10))
}

// FuzzHeadWatch: however a turn's bytes are split into reads, a watch cuts
// and fails only where fasthttp would not read the head from what is
// passed on (it asks for more, and the next read fails, or it refuses the
// head: a 400 either way), and a head passed whole that has its blank
// line is read (or refused) without asking for more.
func FuzzHeadWatch(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\nHost: x\n\r\n",
		"GET / HTTP/1.0\n\r\n", "GET / HTTP/1.0\n\n", "POST /a HTTP/1.1\r\nHost: y\r\nContent-Length: 2\r\n\r\n\n\n",
		"GET / HTTP/1.1\r\n X: folded\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(5), uint16(20))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint16) {
		if len(data) == 0 {
			return
		}
		i := 1 + int(cut1)%len(data)
		j := i + int(cut2)%(len(data)-i+1)
		reads := [][]byte{data[:i], data[i:j], data[j:]}
		got, failed := watchReads(reads)
		whole, wholeFailed := watchReads([][]byte{data})
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("passed on %q, not a prefix of %q", got, data)
		}
		if lineInOneRead(reads) && (!bytes.Equal(got, whole) || failed != wholeFailed) {
			t.Fatalf("split %d/%d gave %q %v, one read %q %v", i, j, got, failed, whole, wholeFailed)
		}
		if !wholeFailed {
			start, lf := firstLine(data)
			if lf < 0 || !isRequestLine(bytes.TrimSuffix(data[start:lf], []byte("\r"))) {
				return
			}
			if end := blankLineEnd(data, lf+1); end > 0 && errors.Is(fasthttpRead(data[:end]), errWantMore) {
				t.Fatalf("%q passed whole, yet fasthttp waits for more after its blank line", data[:end])
			}
			return
		}
		if fasthttpRead(whole) == nil {
			t.Fatalf("%q was cut, yet fasthttp reads it as a head", whole)
		}
	})
}

// blankLineEnd is the offset after the LF of the first blank line ("\n"
// or "\r\n") that starts at i or after, 0 if there is none.
func blankLineEnd(data []byte, i int) int {
	for {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return 0
		}
		if j == 0 || j == 1 && data[i] == '\r' {
			return i + j + 1
		}
		i += j + 1
	}
}

// TestServerConnBareLFHead: over a real socket, a server Conn passes a
// bare-LF head up to its blank line and fails the read after it; a write
// starts a new turn, watched again; after a 100 Continue the body is not
// taken for a head.
func TestServerConnBareLFHead(t *testing.T) {
	client, _, server := pair(t)
	c := server.(*Conn)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	read := func(want string, wantErr error) {
		t.Helper()
		var got []byte
		for len(got) < len(want) {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("read %q, then %v; want %q", got, err, want)
			}
		}
		if string(got) != want {
			t.Fatalf("read %q, want %q", got, want)
		}
		if wantErr != nil {
			if n, err := c.Read(buf); n != 0 || !errors.Is(err, wantErr) {
				t.Fatalf("next read %d, %v; want 0, %v", n, err, wantErr)
			}
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(client, s); err != nil {
			t.Fatal(err)
		}
	}
	send("GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\n")
	read("GET /a HTTP/1.1\nHost: x\n\n", ErrBareLFHead)

	// An answer ends the turn; the next head is CRLF and whole.
	if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drain(t, client)
	send("POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 23\r\n\r\n")
	read("POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 23\r\n\r\n", nil)

	// The body after a 100 Continue looks like a bare-LF head; it is body.
	c.ExpectBody()
	if _, err := c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drain(t, client)
	send("GET / HTTP/1.1\nX: y\n\nzz")
	read("GET / HTTP/1.1\nX: y\n\nzz", nil)

	// The next turn is watched again.
	if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drain(t, client)
	send("\r\nGET /d HTTP/1.1\nHost: x\n\nmore")
	read("\r\nGET /d HTTP/1.1\nHost: x\n\n", ErrBareLFHead)

	// A turn after a write that filled the server's buffer is the middle
	// of an answer, so of pipelined requests: not watched.
	if _, err := c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drain(t, client)
	if _, err := c.Write(bytes.Repeat([]byte("a"), ServerWriteBufferSize)); err != nil {
		t.Fatal(err)
	}
	send("GET / HTTP/1.1\nX: y\n\nzz")
	read("GET / HTTP/1.1\nX: y\n\nzz", nil)

	// A 100 Continue whose body came with the head, then the answer, with
	// no read between: the next turn is a head again, and watched.
	c.ExpectBody()
	for _, w := range []string{"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"} {
		if _, err := c.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	send("GET /e HTTP/1.1\nHost: x\n\n")
	read("GET /e HTTP/1.1\nHost: x\n\n", ErrBareLFHead)

	// A turn that starts by flushing a held write is the middle of
	// pipelined requests: not watched.
	if _, err := c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	drain(t, client)
	c.HoldNextWrite()
	if _, err := c.Write(bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	send("GET / HTTP/1.1\nX: y\n\nzz")
	read("GET / HTTP/1.1\nX: y\n\nzz", nil)
}

// drain reads what the server wrote, so the test's writes stay small.
func drain(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHeadWatch: what the watch costs a request whose head ends in
// CRLFCRLF, for wrk's head and a browser-like one.
func BenchmarkHeadWatch(b *testing.B) {
	for _, tc := range []struct{ name, head string }{
		{"wrk", "GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
		{"browser", "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
			"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n" +
			"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			head := []byte(tc.head)
			var w headWatch
			b.ReportAllocs()
			for b.Loop() {
				w.start()
				if w.scan(head) != len(head) || w.state != headOff {
					b.Fatal("head not passed whole")
				}
			}
		})
	}
}
