package netconn

import (
	"syscall"
	"testing"
	"time"
)

// Found by review. What was wrong: WriteFromPipe of an answer that keeps the connection (keep) after a
// turn that read the request's head alone (headOnly), with nothing held
// (no HoldNextWrite, or a head over maxHold, which Write sent at once)
// and a non-empty head (the body's prefix), panics: awaitingWrite passes
// (h, head) = (nil, prefix) to writeWaiting, whose step writes the pending
// buffers with writeOnce(fd, nil, prefix), which takes &p[0] of the empty
// first buffer (sendmsg path). WriteFromPipe's doc makes the held write
// optional ("writes what a server Conn holds ... then head"), and writeAll
// (the path without a wait) copes with an empty first buffer through
// after(). Expected: the prefix and the pipe's bytes are written and the
// write waits for the next request, as with a held head.
func TestWriteFromPipeNothingHeldAwaited(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	_, srv, client := awaitPair(t, 5*time.Second)
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := srv.Read(buf); n != len(req) || err != nil {
		t.Fatalf("server Read() = %d, %v", n, err)
	}
	r, w := testPipe(t, 128<<10)
	body := pattern(64 << 10)
	if k, err := syscall.Write(w, body); err != nil || k != len(body) {
		t.Fatalf("pipe write: %d, %v", k, err)
	}
	done := make(chan writeResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("WriteFromPipe panicked: %v", p)
				done <- writeResult{-1, nil}
			}
		}()
		n, err := srv.WriteFromPipe([]byte("prefix"), r, len(body), true)
		done <- writeResult{n, err}
	}()
	select {
	case res := <-done:
		if res.n < 0 {
			return // panicked: reported
		}
		t.Fatalf("WriteFromPipe returned (%d, %v) before the next request", res.n, res.err)
	case <-time.After(100 * time.Millisecond):
	}
	answered(t, client, "prefix"+string(body))
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	returned(t, done, len("prefix")+len(body))
}
