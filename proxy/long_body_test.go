package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/valyala/fasthttp"
)

// readLongBody at and around its growth steps, with the source ending
// (io.EOF with the last bytes) exactly at n, one byte short, and with
// bytes after n, which stay unread (passes).
func TestReadLongBodyEdges(t *testing.T) {
	for _, n := range []int{keptBodyLimit + 1, 2 * keptBodyLimit, 2*keptBodyLimit + 1, 4 * keptBodyLimit, 5*keptBodyLimit - 3} {
		src := bytes.Repeat([]byte("abcdefg"), n/7+2)[:n]
		for _, tc := range []struct {
			name    string
			give    io.Reader
			wantErr error
		}{
			{"eof at n", iotest.DataErrReader(bytes.NewReader(src)), nil},
			{"short", iotest.DataErrReader(bytes.NewReader(src[:n-1])), io.ErrUnexpectedEOF},
			{"more after", io.MultiReader(bytes.NewReader(src), bytes.NewReader([]byte("NEXT"))), nil},
		} {
			var resp fasthttp.Response
			r := bufio.NewReaderSize(iotest.HalfReader(tc.give), 4096)
			err := readLongBody(&resp, r, n)
			if !errors.Is(err, tc.wantErr) || err == nil && !bytes.Equal(resp.Body(), src) {
				t.Fatalf("n=%d %s: readLongBody() = %v, body %d bytes; want %v and the %d bytes", n, tc.name, err, len(resp.Body()), tc.wantErr, n)
			}
			if tc.name == "more after" {
				if rest, _ := io.ReadAll(r); string(rest) != "NEXT" {
					t.Fatalf("n=%d: left %q unread, want NEXT", n, rest)
				}
			}
		}
	}
}
