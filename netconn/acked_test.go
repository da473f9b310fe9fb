package netconn

import (
	"io"
	"testing"
	"time"
)

// TestRequestAcked: a client Conn says whether the peer acknowledged any
// byte of the request being written: not before it is written, nor for a
// second request its peer has not read, once the peer has read it.
func TestRequestAcked(t *testing.T) {
	const req = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	_, raw, peer := pair(t)
	c := NewClient(raw.Conn, 1024)
	if !c.ackBaseOK {
		t.Fatal("this kernel reports no acknowledged bytes (tcp_info)")
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	acked := func() bool {
		// The acknowledgement follows the peer's read within a round trip
		// (or a delayed ACK): give it up to a second.
		for range 100 {
			if c.RequestAcked() {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if c.RequestAcked() {
		t.Fatal("acknowledged before any request was written")
	}
	// The write of a whole request returns once the answer starts to
	// arrive (writeThenWait): it runs beside the peer.
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(req))
		wrote <- err
	}()
	if _, err := io.ReadFull(peer, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	if !acked() {
		t.Fatal("the request the peer read is not acknowledged")
	}
	// The answer, read; then the next request starts with nothing of it
	// acknowledged yet.
	if _, err := peer.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	c.peek1 = func(uintptr) { c.peekErr = 11 } // EAGAIN: the idle check saw nothing
	if err := c.beginRequest(); err != nil {
		t.Fatal(err)
	}
	if c.RequestAcked() {
		t.Fatal("the next request is acknowledged before it is written")
	}
}
