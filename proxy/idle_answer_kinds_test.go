package proxy

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestIdleAfterEachAnswerKind: timeouts.idle closes a kept-alive
// connection about idle after the last answer, and not before, whichever
// way the connection waited for the next request: the read after a short
// answer (yield), the wait inside the write of a 4 KiB-128 KiB answer
// (AwaitNextRequest), and the read after an answer over keptBodyLimit.
// (Passes: a regression test for the await path, which TestClientTimeouts
// does not take.)
func TestIdleAfterEachAnswerKind(t *testing.T) {
	b := startBackend(t, "b1", sizedBody)
	px := startProxy(t, "timeouts: { idle: 500ms, client_read: 10s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	for _, n := range []int{100, 8 << 10, 100 << 10, 200 << 10} {
		t.Run(strconv.Itoa(n)+" bytes", func(t *testing.T) {
			c, br := dialProxy(t, px.addr)
			path := "/?n=" + strconv.Itoa(n)
			getOn(t, c, br, path)
			time.Sleep(300 * time.Millisecond) // within idle
			getOn(t, c, br, path)
			start := time.Now()
			got, err := io.ReadAll(br)
			took := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still open after 5 s")
			}
			if len(got) != 0 || took < 400*time.Millisecond || took > 2500*time.Millisecond {
				t.Errorf("closed after %v with %d bytes, want after about idle (500ms) with none", took, len(got))
			}
		})
	}
}
