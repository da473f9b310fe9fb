package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Memory a hostile peer makes the proxy hold with a body it announces but
// does not send.

// liveHeap is the live heap after a collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestAnnouncedResponseBodyNotAllocated: the same on the upstream side: a
// backend that announces an 8 MB body (within max_response_bytes, 64 MiB
// by default) and trickles it must not make the proxy hold 8 MB per
// request from the first byte: memory grows with what arrives.
//
// fasthttp's Response.ReadBody allocated the announced Content-Length
// whole before reading: 16 requests in flight to such a backend held
// 128 MB for up to timeouts.response (found by review); after a head in
// bare LFs it still did until session 21 (found by review). A chunk's
// size line still does (readBodyChunked; README, Known limitations).
func TestAnnouncedResponseBodyNotAllocated(t *testing.T) {
	const requests, announced = 16, 8_000_000
	for _, tt := range []struct{ name, head string }{
		{"content-length", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nx", announced)},
		{"bare-lf head", fmt.Sprintf("HTTP/1.1 200 OK\nContent-Length: %d\n\nx", announced)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var sent atomic.Int32
			ln := serveRaw(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				var req fasthttp.Request
				if err := req.Read(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, tt.head); err != nil {
					return
				}
				sent.Add(1)
				<-release
			})
			px := startProxy(t, fmt.Sprintf("timeouts: { response: 10s }\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
			before := liveHeap()
			var cs []net.Conn
			for range requests {
				c, _ := dialProxy(t, px.addr)
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			waitFor(t, "every head sent", 10*time.Second, func() bool { return sent.Load() == requests })
			time.Sleep(500 * time.Millisecond) // and read by the proxy (a margin, not a bound)
			after := liveHeap()
			close(release)
			for _, c := range cs {
				c.Close()
			}
			grew := int64(after) - int64(before)
			t.Logf("heap %d MiB -> %d MiB with %d responses that each sent one byte of an announced %d-byte body", before>>20, after>>20, requests, announced)
			if grew > 32<<20 {
				t.Errorf("the heap grew by %d MiB for %d bytes of response body received; want a few MiB at most: the announced length was allocated before it came", grew>>20, requests)
			}
		})
	}
}
