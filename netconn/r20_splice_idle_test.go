package netconn

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Found by review. What was wrong: when the system refuses to splice to the socket (WriteFromPipe's
// copyFromPipe fallback) in an answer that keeps the connection and may
// wait (keep, headOnly), the idle time of the wait for the next request
// is counted from when the answer's head went out, not from when its body
// did: the refusal comes in the step (stepWrite's spliceOut sets sp.err),
// awaitingWrite sets awaitUntil from then, and WriteFromPipe defers
// idleFromNow only for `c.sp.left > 0 && c.sp.err == 0` (splice.go:168),
// so the body's copy, however long a slow client takes to read it, eats
// the idle time and the next Read fails at once with a deadline error.
// The spliced path (sp.err == 0) restarts the idle time after the body
// (idleFromNow), as awaitingWrite does for a plain write that did not
// wait ("found by review: a client that read 100 KB for longer than
// timeouts.idle found the connection closed"). Expected: the request the
// client sends right after reading the whole answer is read.
func TestSpliceIdleFromAnswerEnd(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	const idle = 150 * time.Millisecond
	body := pattern(1 << 20)
	for _, refused := range []bool{false, true} {
		name := "spliced"
		if refused {
			name = "splice refused"
		}
		t.Run(name, func(t *testing.T) {
			var r int
			if refused {
				// A regular file: splice(2) from it to a socket is EINVAL,
				// as a system that refuses sockets says.
				f, err := os.CreateTemp(t.TempDir(), "notapipe")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				if _, err := f.Write(body); err != nil {
					t.Fatal(err)
				}
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				r = int(f.Fd())
			} else {
				r = filledPipe(t, 1<<20, body)
			}
			_, srv, client := awaitPair(t, idle)
			_ = srv.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
			_ = client.(*net.TCPConn).SetReadBuffer(16 << 10)
			sendRequest(t, srv, client, req)
			holdHead(t, srv)
			// A slow client: the body takes several idle timeouts to read;
			// it sends its next request as soon as it has all of it.
			got := make(chan []byte, 1)
			go func() {
				_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
				all := make([]byte, 0, 19+len(body))
				b := make([]byte, 32<<10)
				for len(all) < 19+len(body) {
					n, err := client.Read(b[:min(len(b), 19+len(body)-len(all))])
					all = append(all, b[:n]...)
					if err != nil {
						break
					}
					time.Sleep(15 * time.Millisecond)
				}
				_, _ = client.Write([]byte(req))
				got <- all
			}()
			start := time.Now()
			n, err := srv.WriteFromPipe(nil, r, len(body), true)
			took := time.Since(start)
			if n != len(body) || err != nil {
				t.Fatalf("WriteFromPipe() = %d, %v", n, err)
			}
			if a := <-got; !bytes.Equal(a[19:], body) {
				t.Fatalf("the client read %d bytes, intact %v", len(a), false)
			}
			if took < 2*idle {
				t.Fatalf("test setup: the answer took %v to write, not twice the idle timeout %v", took, idle)
			}
			_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := srv.Read(make([]byte, 4096)); n != len(req) || err != nil {
				t.Fatalf("Read() of the next request, sent at once after an answer that took %v to write = %d, %v; "+
					"want it (the idle time %v starts when the answer is written)", took.Round(time.Millisecond), n, err, idle)
			}
		})
	}
}
