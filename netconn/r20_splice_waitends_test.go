package netconn

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestSplicedWaitEnds: a spliced answer that keeps the connection
// (WriteFromPipe, keep) waits for the next request as an awaited Write
// does, and its wait ends the same ways: the client's close, its
// half-close or a pipelined request sent before the answer, the idle
// timeout (the read after it then fails at once), a drain (the read after
// it still reads a later request).
func TestSplicedWaitEnds(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name   string
		idle   time.Duration
		before func(t *testing.T, client net.Conn) // after the turn's read, before the answer
		end    func(t *testing.T, nl *Listener, client net.Conn)
		check  func(t *testing.T, srv *Conn, client net.Conn)
	}{
		{
			name: "client closes",
			idle: time.Minute,
			end:  func(_ *testing.T, _ *Listener, client net.Conn) { client.Close() },
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				if n, err := srv.Read(make([]byte, 64)); n != 0 || err != io.EOF {
					t.Fatalf("Read() = %d, %v; want 0, EOF", n, err)
				}
			},
		},
		{
			name: "half-close before the answer",
			idle: time.Minute,
			before: func(t *testing.T, client net.Conn) {
				if err := client.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				if n, err := srv.Read(make([]byte, 64)); n != 0 || err != io.EOF {
					t.Fatalf("Read() = %d, %v; want 0, EOF", n, err)
				}
			},
		},
		{
			name: "pipelined before the answer",
			idle: time.Minute,
			before: func(t *testing.T, client net.Conn) {
				if _, err := client.Write([]byte("NEXT")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				buf := make([]byte, 64)
				if n, err := srv.Read(buf); string(buf[:n]) != "NEXT" || err != nil {
					t.Fatalf("Read() = %q, %v; want the pipelined request", buf[:n], err)
				}
			},
		},
		{
			name: "idle timeout",
			idle: 150 * time.Millisecond,
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				_, err := srv.Read(make([]byte, 64))
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("Read() after the idle wait = %v; want a deadline error", err)
				}
			},
		},
		{
			name: "drain",
			idle: time.Minute,
			end: func(t *testing.T, nl *Listener, _ net.Conn) {
				if err := nl.Drain(); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn, client net.Conn) {
				time.AfterFunc(50*time.Millisecond, func() { client.Write([]byte("LATE")) })
				buf := make([]byte, 64)
				if n, err := srv.Read(buf); string(buf[:n]) != "LATE" || err != nil {
					t.Fatalf("Read() = %q, %v; want the later request", buf[:n], err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nl, srv, client := awaitPair(t, tt.idle)
			sendRequest(t, srv, client, req)
			if tt.before != nil {
				tt.before(t, client)
				time.Sleep(50 * time.Millisecond) // the poller takes the readiness
			}
			body := pattern(64 << 10)
			r := filledPipe(t, 128<<10, body)
			srv.AwaitNextRequest(false)
			holdHead(t, srv)
			done := make(chan writeResult, 1)
			go func() {
				n, err := srv.WriteFromPipe([]byte("prefix"), r, len(body), true)
				done <- writeResult{n, err}
			}()
			answered(t, client, "HTTP/1.1 200 OK\r\n\r\nprefix"+string(body))
			if tt.before == nil && tt.idle >= time.Second {
				stillWaiting(t, done)
			}
			if tt.end != nil {
				tt.end(t, nl, client)
			}
			returned(t, done, len("prefix")+len(body))
			if err := srv.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			tt.check(t, srv, client)
		})
	}
}
