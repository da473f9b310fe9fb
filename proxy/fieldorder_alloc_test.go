//go:build !race

package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestFieldOrderAllocs: note and restore allocate nothing once their
// buffers have grown, with repeated names to put back in order.
func TestFieldOrderAllocs(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nAccept: 1\r\nX-Mid: m\r\nAccept: 2\r\n\r\n"
	var req fasthttp.Request
	var o fieldOrder
	run := func() {
		req.Reset()
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
			t.Fatal(err)
		}
		o.noteRequest(&req.Header)
		req.Header.DelBytes([]byte("Connection"))
		o.restore(&req.Header)
	}
	run()
	if got := bytes.Join(req.Header.PeekAll("Accept"), []byte(",")); string(got) != "1,2" {
		t.Fatalf("Accept %q after restore, want 1,2", got)
	}
	r := bufio.NewReader(nil)
	allocs := testing.AllocsPerRun(100, func() {
		req.Reset()
		r.Reset(strings.NewReader(head))
		_ = req.Header.Read(r)
		o.noteRequest(&req.Header)
		req.Header.DelBytes([]byte("Connection"))
		o.restore(&req.Header)
	})
	// strings.NewReader is the one allocation of the loop itself.
	if allocs > 1 {
		t.Errorf("%v allocations per message, want none of fieldOrder's", allocs)
	}
}
