package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Found by review. What was wrong: a backend response head in bare LFs (README, Forwarding: "read as
// if they were CRLFs and passed on", as nginx and HAProxy read it) has
// its body read by fasthttp's Response.ReadLimitBody (readResponse's
// `case bare:` -> readFinal), which allocates the announced
// Content-Length whole when the head arrives. README says "A response
// body with a Content-Length over 1 MiB (over 128 KiB when not spliced)
// is read into a buffer that grows as its bytes arrive
// (TestAnnouncedResponseBodyNotAllocated, found by review)"; that fix
// (readLongBody) is only on readLentBody's path. 16 requests to a
// backend that writes its heads with bare LFs and announces 8 MB each
// (within max_response_bytes) make sluice hold 128 MB from the first
// byte until timeouts.response (the same head in CRLFs grows the heap
// by about 4 MiB). Expected: the heap grows with what arrives.
func TestBareLFHeadAnnouncedBodyNotAllocated(t *testing.T) {
	const requests, announced = 16, 8_000_000
	for _, tt := range []struct{ name, head string }{
		{"bare-lf", fmt.Sprintf("HTTP/1.1 200 OK\nContent-Length: %d\n\nx", announced)},
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
			for range requests {
				c, _ := dialProxy(t, px.addr)
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "every head sent", 10*time.Second, func() bool { return sent.Load() == requests })
			time.Sleep(500 * time.Millisecond) // and read by the proxy (a margin, not a bound)
			after := liveHeap()
			close(release)
			grew := int64(after) - int64(before)
			t.Logf("heap %d MiB -> %d MiB", before>>20, after>>20)
			if grew > 32<<20 {
				t.Errorf("the heap grew by %d MiB for %d bytes of response body received: the announced length was allocated before it came", grew>>20, requests)
			}
		})
	}
}
