package netconn

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Found by review. What was wrong: ReadToPipe waits for the read deadline (forever without one) when
// the pipe has no slot left and the socket holds nothing but the peer's
// close or reset. spliceIn's EAGAIN branch (splice.go:113-124) peeks the
// socket to tell a full pipe from an empty socket, but takes only "data"
// as a full pipe: a peek that returns 0 (EOF) or an error (a reset, which
// the peek even consumes) is taken for an empty socket, and spliceIn asks
// RawConn.Read to wait for readability that has already been reported and
// will never come again. A backend that sends a body in small segments
// (one pipe slot each) and closes before its end gets its client's
// answer failed only at the read timeout, as a timeout (ReadTimedOut,
// 504) instead of at once as a cut body (io.ErrUnexpectedEOF, 502), and
// with no read deadline the exchange hangs. Expected: ReadToPipe returns
// promptly with what it moved and io.ErrUnexpectedEOF (or ErrPipeFull,
// after which the caller's own read meets the end), never a deadline.
func TestReadToPipeFullPipeThenClose(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "close"
		if reset {
			name = "reset"
		}
		t.Run(name, func(t *testing.T) {
			c, _, peer := pair(t)
			// One page: a single slot, taken by the first segment.
			_, w := testPipe(t, 4096)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			go func() {
				_, _ = peer.Write(pattern(100))
				time.Sleep(100 * time.Millisecond)
				if reset {
					_ = peer.(*Conn).Conn.(*net.TCPConn).SetLinger(0)
				}
				_ = peer.Close()
			}()
			start := time.Now()
			n, err := c.ReadToPipe(w, 10000)
			took := time.Since(start)
			if errors.Is(err, os.ErrDeadlineExceeded) || c.ReadTimedOut() {
				t.Fatalf("ReadToPipe() = %d, %v after %v: the peer's %s was taken for an empty socket "+
					"while the pipe was full; want 100 and the end of the stream at once", n, err, took.Round(time.Millisecond), name)
			}
			if n != 100 || err == nil {
				t.Fatalf("ReadToPipe() = %d, %v; want 100 and an error", n, err)
			}
			if !reset && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrPipeFull) {
				t.Fatalf("ReadToPipe() error %v; want io.ErrUnexpectedEOF or ErrPipeFull", err)
			}
		})
	}
}
