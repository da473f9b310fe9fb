package netconn

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// smallSegmentPair is listenerPair with client timeouts (write: wt) and a
// client whose MSS is that of an Ethernet path: with loopback's 64 KiB
// segments a receive window opens in large steps, and the sender may wait
// for its persist timer (200 ms and more), stalling a steady reader for
// longer than a short write timeout.
func smallSegmentPair(t *testing.T, wt time.Duration) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := NewListener(ln)
	nl.ReadTimeout, nl.WriteTimeout, nl.IdleTimeout = time.Second, wt, time.Second
	t.Cleanup(func() { nl.Close() })
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1460)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	srv, client := dialAccept(t, nl, d.Dial)
	t.Cleanup(func() { client.Close(); srv.Close() })
	return srv, client
}

// TestSpliceClientWriteTimeout: a spliced body's wait for room
// runs under the listener's WriteTimeout (client_write), counted from the
// last progress: a client that takes nothing fails the write about then,
// kept answer or not (the awaited one splices first inside the wait's
// step); a slow but steady one is not cut.
func TestSpliceClientWriteTimeout(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	const wt = 200 * time.Millisecond
	body := pattern(1 << 20)
	for _, tt := range []struct {
		name   string
		keep   bool
		reader bool // a slow, steady reader
	}{
		{"stalled, closing answer", false, false},
		{"stalled, kept answer", true, false},
		{"steady, kept answer", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := smallSegmentPair(t, wt)
			_ = srv.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
			sendRequest(t, srv, client, req)
			r := filledPipe(t, 1<<20, body)
			srv.AwaitNextRequest(false)
			holdHead(t, srv)
			if tt.reader {
				go func() {
					_ = client.SetReadDeadline(time.Now().Add(8 * time.Second))
					b := make([]byte, 16<<10)
					for total := 0; total < 19+len(body); {
						n, err := client.Read(b)
						total += n
						if err != nil {
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
					_, _ = client.Write([]byte(req))
				}()
			}
			start := time.Now()
			n, err := srv.WriteFromPipe(nil, r, len(body), tt.keep)
			took := time.Since(start)
			if tt.reader {
				if n != len(body) || err != nil {
					t.Fatalf("WriteFromPipe() to a steady reader = %d, %v after %v; want it whole", n, err, took)
				}
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(body) {
				t.Fatalf("WriteFromPipe() to a client that reads nothing = %d, %v after %v; want a deadline error", n, err, took)
			}
		})
	}
}
