package netconn

import (
	"net"
	"testing"
	"time"
)

// Found by review. What was wrong: a graceful stop loses a request that had already arrived on a new
// connection the server had not yet read from. Listener.Drain
// (conn.go:1804-1811) hushes every connection whose `spoke` flag is
// unset, and `spoke` is set only once Read has consumed a byte
// (conn.go:576-579), not when bytes reach the socket. The Read that
// follows meets the deadline interruptAwait set to now: RawConn.Read
// fails before it looks at the socket, and the hushed branch
// (conn.go:586-590) reports net.ErrClosed, so the server closes the
// connection with the request unread and unanswered. fasthttp hands an
// accepted connection to a worker that reads it later, and most clients
// send their request right after connecting, so a stop under load hits
// this. README, Graceful stop: "A connection on which no byte has come
// yet ... is closed at once ... One whose first bytes arrive meanwhile is
// read and answered." Expected: the Read returns the request; actual:
// net.ErrClosed. Fix: in the hushed branch look at the socket first
// (recv MSG_PEEK|MSG_DONTWAIT, as answered1 does) and, when a byte is
// there, clear the hush, restore the read deadline and read on.
func TestHushedConnWithRequestWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := NewListener(ln)
	nl.ReadTimeout, nl.IdleTimeout = time.Minute, time.Minute
	t.Cleanup(func() { nl.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := nl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the request is in the server's socket, not yet read
	if err := nl.Drain(); err != nil {
		t.Fatal(err)
	}
	nl.HushSilent()
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != req {
		t.Fatalf("Read after Drain = %q, %v; want the request that had arrived before the stop (%q)", buf[:n], err, req)
	}
}
