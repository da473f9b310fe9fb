package netconn

import (
	"bytes"
	"io"
	"syscall"
	"testing"
	"time"
)

// Found by review. What was wrong: a spliced answer whose head fills the server's write buffer
// exactly (a 4096-byte head, flushed alone: proxy's ImmediateHeaderFlush)
// after a request that came with its body (not headOnly) leaves the Conn
// believing it is still in the middle of that answer. The held head's
// Write runs noteServerWrite, which sets midAnswer for a full buffer;
// WriteFromPipe, which always ends the answer, writes the rest without
// telling noteServerWrite (splice.go WriteFromPipe), so midAnswer stays
// set and the next request's Read neither counts its turn (Turns stays
// behind for good: proxy's hintable drops 103 Early Hints for the rest of
// the connection) nor watches its head for a bare LF (the read waits for
// the read timeout instead of failing with ErrBareLFHead). The same answer
// written without splicing (held head, then the body with Write) counts.
// Expected: Turns() is 2 on the next request either way.
func TestSplicedAnswerEndsTurn(t *testing.T) {
	const req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
	head := bytes.Repeat([]byte("h"), ServerWriteBufferSize)
	body := pattern(64 << 10)
	for _, spliced := range []bool{false, true} {
		name := "written"
		if spliced {
			name = "spliced"
		}
		t.Run(name, func(t *testing.T) {
			_, srv, client := awaitPair(t, 5*time.Second)
			_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := client.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			if _, err := io.ReadAtLeast(srv, buf, len(req)); err != nil {
				t.Fatal(err)
			}
			srv.AwaitNextRequest(false)
			srv.HoldNextWrite()
			if _, err := srv.Write(head); err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadFull(client, make([]byte, len(head)+len(body)))
				got <- err
			}()
			if spliced {
				r, w := testPipe(t, 128<<10)
				if k, err := syscall.Write(w, body); err != nil || k != len(body) {
					t.Fatalf("pipe write: %d, %v", k, err)
				}
				if n, err := srv.WriteFromPipe(nil, r, len(body), false); n != len(body) || err != nil {
					t.Fatalf("WriteFromPipe() = %d, %v", n, err)
				}
			} else if n, err := srv.Write(body); n != len(body) || err != nil {
				t.Fatalf("Write() = %d, %v", n, err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
			if _, err := client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Read(buf); err != nil {
				t.Fatal(err)
			}
			if got := srv.Turns(); got != 2 {
				t.Fatalf("Turns() on the second request, after a %s answer = %d, want 2", name, got)
			}
		})
	}
}
