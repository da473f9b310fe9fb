package proxy

import (
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"sluice/netconn"
)

// TestBodyWithHeadAroundFirstRead: a POST whose head and 16 KiB body come
// in one write reaches the backend whole, for heads shorter and longer
// than the first read of a turn (netconn caps it, so that the body is
// read into the request rather than copied out of the read buffer).
func TestBodyWithHeadAroundFirstRead(t *testing.T) {
	var header atomic.Value
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		header.Store(r.Header.Get("X-Long")) // the harness has read the body
	})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_header_bytes: 65536 }\n")
	body := strings.Repeat("0123456789abcdef", 1024) // 16 KiB
	for _, n := range []int{10, netconn.FirstReadSize - 200, netconn.FirstReadSize + 200, 3 * netconn.FirstReadSize} {
		long := strings.Repeat("v", n)
		req := "POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + long + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if code := rawStatus(t, px.addr, req); code != 200 {
			t.Fatalf("%d-byte header: status %d, want 200", n, code)
		}
		b.mu.Lock()
		got := b.body
		b.mu.Unlock()
		if h, _ := header.Load().(string); h != long || sha256.Sum256(got) != sha256.Sum256([]byte(body)) {
			t.Fatalf("%d-byte header: the backend got %d header bytes and %d body bytes, not the %d and %d sent, or other bytes",
				n, len(h), len(got), len(long), len(body))
		}
	}
}
