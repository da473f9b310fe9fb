package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleConnectionsKeepNoLargeBodies: a kept-alive client connection
// that once carried a large request or response body does not keep a
// buffer of that size while it waits for its next request.
func TestIdleConnectionsKeepNoLargeBodies(t *testing.T) {
	const (
		conns = 16
		size  = 4 << 20
	)
	big := bytes.Repeat([]byte("x"), size)
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(big)
		}
	})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// Half upload a large body, half download one; each connection
		// stays open, idle, afterwards.
		req := "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
		if i%2 == 1 {
			req = fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", size, big)
		}
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (i%2 == 0 && n != size) {
			t.Fatalf("connection %d: status %d, %d bytes", i, resp.StatusCode, n)
		}
	}
	grown := int64(heap()) - int64(before)
	t.Logf("heap grew by %d KiB with %d idle connections", grown>>10, conns)
	// Each large body kept would be 4 MiB or more: 16 of them 64 MiB.
	if limit := int64(conns * size / 4); grown > limit {
		t.Errorf("heap grew by %d MiB with %d idle connections that each carried a %d MiB body; want under %d MiB",
			grown>>20, conns, size>>20, limit>>20)
	}
}

// TestLongRequestHeads: request heads longer than the upstream client's
// write buffer go out in more than one write and are answered at once, not
// at the exchange's deadline (only a write shorter than the buffer ends a
// request), with every header intact; so do short bodies behind them.
func TestLongRequestHeads(t *testing.T) {
	var got atomic.Value
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("X-Long"))
	})
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+
		"limits: { max_header_bytes: 131072 }\ntimeouts: { response: 5s }\n")
	for _, n := range []int{upstreamWriteBufferSize - 300, upstreamWriteBufferSize, 2*upstreamWriteBufferSize + 7, 100 << 10} {
		for _, body := range []string{"", "short body"} {
			long := strings.Repeat("v", n)
			req := "POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + long + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			start := time.Now()
			if code := rawStatus(t, px.addr, req); code != 200 {
				t.Fatalf("%d-byte header, body %q: status %d, want 200", n, body, code)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%d-byte header, body %q: answered after %v, want at once", n, body, d)
			}
			if v, _ := got.Load().(string); v != long {
				t.Errorf("%d-byte header, body %q: backend got %d bytes of it", n, body, len(v))
			}
		}
	}
}
