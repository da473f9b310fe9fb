package netconn

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestWarmResetSecondRead: as TestRequestUnreceivedWarmReset, but
// the client reads twice after the reset, as sluice's upstream client
// does (readResponse's headEnd peeks through bufio, which drops the
// ECONNRESET it met; fasthttp's header read then reads again). The
// second read of a reset socket returns 0 bytes and no error on Linux
// (the reset set RCV_SHUTDOWN), which Read reports as io.EOF and records
// as the peer's orderly close (sawEOF). RequestUnreceived then sees
// "EOF, connection closed (reset), none of the request acknowledged"
// and says true for a request the peer's application read.
func TestWarmResetSecondRead(t *testing.T) {
	const req = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	for _, warm := range []int{1, 3} {
		_, raw, peer := pair(t)
		c := NewClient(raw.Conn, 1024)
		c.peek1 = func(uintptr) { c.peekErr = syscall.EAGAIN }
		c.SetDeadline(time.Now().Add(5 * time.Second))
		peer.SetDeadline(time.Now().Add(5 * time.Second))
		exchanges(t, c, peer, req, warm)
		read := make(chan error, 1)
		go func() {
			_, err := io.ReadFull(peer, make([]byte, len(req)))
			_ = peer.(*Conn).Conn.(*net.TCPConn).SetLinger(0)
			peer.Close()
			read <- err
		}()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		if err := <-read; err != nil {
			t.Fatalf("peer: %v", err)
		}
		n1, err1 := c.Read(make([]byte, 64))
		n2, err2 := c.Read(make([]byte, 64))
		t.Logf("warm %d: first read %d, %v; second read %d, %v; sawEOF %v", warm, n1, err1, n2, err2, c.sawEOF)
		// Found by review (fixed): expected RequestUnreceived false (the peer read the whole
		// request, then reset); actual true once a second read after the
		// reset met "EOF".
		if c.RequestUnreceived() {
			t.Errorf("warm %d: RequestUnreceived() = true after a reset of a request the peer read (reads: %d, %v; %d, %v)", warm, n1, err1, n2, err2)
		}
	}
}
