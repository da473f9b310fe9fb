package netconn

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestFirstReadOfTurnCapped: the first read of each turn on a server
// connection returns at most FirstReadSize bytes, however large the
// caller's buffer, so that a body that came with its head is left in the
// socket for a read into the request itself; the reads after it in the
// turn are not capped, and no byte is lost or reordered.
func TestFirstReadOfTurnCapped(t *testing.T) {
	_, srv, client := awaitPair(t, time.Minute)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	body := bytes.Repeat([]byte("b"), 16<<10)
	for turn := range 2 {
		msg := append([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16384\r\n\r\n"), body...)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		// Wait until the whole message has arrived, so that an uncapped
		// read would take 8 KiB.
		time.Sleep(50 * time.Millisecond)
		buf := make([]byte, 8<<10)
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > FirstReadSize {
			t.Fatalf("turn %d: the first read returned %d bytes, want at most %d", turn, n, FirstReadSize)
		}
		got := append([]byte(nil), buf[:n]...)
		rest := make([]byte, len(msg)-n)
		m, err := srv.Read(rest)
		if err != nil {
			t.Fatal(err)
		}
		if m <= FirstReadSize {
			t.Fatalf("turn %d: the second read returned %d bytes: capped too", turn, m)
		}
		if _, err := io.ReadFull(srv, rest[m:]); err != nil {
			t.Fatal(err)
		}
		if got = append(got, rest...); !bytes.Equal(got, msg) {
			t.Fatalf("turn %d: read %d bytes that differ from the %d sent", turn, len(got), len(msg))
		}
		// The answer ends the turn.
		if _, err := srv.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, make([]byte, len("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))); err != nil {
			t.Fatal(err)
		}
	}
}
