package netconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// testPipe makes a non-blocking pipe of size bytes (0: the default),
// closed at the end of the test.
func testPipe(t *testing.T, size int) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	if size > 0 {
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[1]), syscall.F_SETPIPE_SZ, uintptr(size)); e != 0 {
			t.Fatal(e)
		}
	}
	return fds[0], fds[1]
}

// filledPipe makes a pipe of size bytes (testPipe) holding body, and
// returns its read end.
func filledPipe(t *testing.T, size int, body []byte) int {
	t.Helper()
	r, w := testPipe(t, size)
	for k := 0; k < len(body); {
		m, err := syscall.Write(w, body[k:])
		if err != nil {
			t.Fatal(err)
		}
		k += m
	}
	return r
}

// holdHead has a server Conn hold an answer's head (HoldNextWrite), as
// the proxy does before a spliced body.
func holdHead(t *testing.T, srv *Conn) {
	t.Helper()
	srv.HoldNextWrite()
	if _, err := srv.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
}

// drainPipe reads n bytes out of the pipe's read end.
func drainPipe(t *testing.T, r, n int) []byte {
	t.Helper()
	out := make([]byte, 0, n)
	buf := make([]byte, 64<<10)
	for len(out) < n {
		k, err := syscall.Read(r, buf[:min(len(buf), n-len(out))])
		if err != nil || k == 0 {
			t.Fatalf("pipe read after %d of %d bytes: %d, %v", len(out), n, k, err)
		}
		out = append(out, buf[:k]...)
	}
	return out
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/253)
	}
	return b
}

// TestReadToPipe: ReadToPipe moves exactly what it is asked from the
// socket into the pipe, across several arrivals, and ends with the right
// error at an end of stream, a deadline, or a pipe with no room left while
// the socket has data.
func TestReadToPipe(t *testing.T) {
	const n = 48 << 10
	body := pattern(n + 100)
	tests := []struct {
		name     string
		pipeSize int
		send     func(peer net.Conn) // writes to c's peer
		deadline time.Duration
		want     int   // bytes moved
		wantErr  error // nil, io.ErrUnexpectedEOF, os.ErrDeadlineExceeded or ErrPipeFull
	}{
		// Pipes of 256 slots: one slot a page fragment, and under load the
		// bytes may come in many small pieces (a default 16-slot pipe
		// filled once in CI: ErrPipeFull, which the proxy falls back on).
		{"whole, then more unread", 1 << 20, func(p net.Conn) { p.Write(body) }, 0, n, nil},
		{"in pieces", 1 << 20, func(p net.Conn) {
			for i := 0; i < n; i += 12 << 10 {
				p.Write(body[i : i+12<<10])
				time.Sleep(5 * time.Millisecond)
			}
			p.Write(body[n:])
		}, 0, n, nil},
		{"end of stream", 1 << 20, func(p net.Conn) { p.Write(body[:1000]); p.Close() }, 0, 1000, io.ErrUnexpectedEOF},
		{"deadline", 1 << 20, func(p net.Conn) { p.Write(body[:1000]) }, 150 * time.Millisecond, 1000, os.ErrDeadlineExceeded},
		{"pipe full", 4096, func(p net.Conn) {
			for i := 0; i < n; i += 4 << 10 {
				p.Write(body[i : i+4<<10])
				time.Sleep(3 * time.Millisecond)
			}
		}, 0, -1, ErrPipeFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, peer := pair(t)
			r, w := testPipe(t, tt.pipeSize)
			if tt.deadline > 0 {
				_ = c.SetReadDeadline(time.Now().Add(tt.deadline))
			} else {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			}
			done := make(chan struct{})
			go func() { defer close(done); tt.send(peer) }()
			got, err := c.ReadToPipe(w, n)
			<-done
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ReadToPipe() error %v, want %v", err, tt.wantErr)
			}
			if tt.want >= 0 && got != tt.want {
				t.Fatalf("ReadToPipe() moved %d bytes, want %d", got, tt.want)
			}
			if tt.wantErr == ErrPipeFull && (got <= 0 || got >= n) {
				t.Fatalf("a full pipe took %d of %d bytes", got, n)
			}
			if moved := drainPipe(t, r, got); !bytes.Equal(moved, body[:got]) {
				t.Fatal("the pipe holds other bytes than the socket's")
			}
			if tt.wantErr == os.ErrDeadlineExceeded && !c.ReadTimedOut() {
				t.Fatal("ReadTimedOut() = false after a deadline")
			}
			if tt.wantErr == nil {
				// What came after the n bytes is still the socket's.
				rest := make([]byte, 100)
				if _, err := io.ReadFull(c, rest); err != nil || !bytes.Equal(rest, body[n:]) {
					t.Fatalf("the bytes after: %v, intact %v", err, bytes.Equal(rest, body[n:]))
				}
			}
		})
	}
}

// TestWriteFromPipe: a server Conn's held write (the answer's head), then
// the bytes given, then the pipe's, reach the peer in that order; a peer
// that does not read meets the write deadline instead of a hang.
func TestWriteFromPipe(t *testing.T) {
	t.Run("held, head, pipe", func(t *testing.T) {
		c, _, peer := pair(t)
		srv := peer.(*Conn)
		r, w := testPipe(t, 128<<10)
		body := pattern(100 << 10)
		if k, err := syscall.Write(w, body); err != nil || k != len(body) {
			t.Fatalf("pipe write: %d, %v", k, err)
		}
		srv.HoldNextWrite()
		if _, err := srv.Write([]byte("HEAD\r\n")); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 6+5+len(body))
			_, err := io.ReadFull(c, b)
			if err != nil {
				b = nil
			}
			got <- b
		}()
		n, err := srv.WriteFromPipe([]byte("first"), r, len(body), false)
		if err != nil || n != 5+len(body) {
			t.Fatalf("WriteFromPipe() = %d, %v; want %d, nil", n, err, 5+len(body))
		}
		want := append([]byte("HEAD\r\nfirst"), body...)
		if b := <-got; !bytes.Equal(b, want) {
			t.Fatalf("the peer read %d bytes, intact %v", len(b), bytes.Equal(b, want))
		}
	})
	t.Run("peer not reading", func(t *testing.T) {
		c, _, peer := pair(t)
		srv := peer.(*Conn)
		_ = srv.Conn.(*net.TCPConn).SetWriteBuffer(4096)
		_ = c.Conn.(*countingConn).Conn.(*net.TCPConn).SetReadBuffer(4096)
		r, w := testPipe(t, 1<<20)
		body := pattern(1 << 20)
		written := 0
		for written < len(body) {
			k, err := syscall.Write(w, body[written:])
			if err != nil {
				t.Fatal(err)
			}
			written += k
		}
		_ = srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := srv.WriteFromPipe(nil, r, len(body), false)
		if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(body) {
			t.Fatalf("WriteFromPipe() to a peer that reads nothing = %d, %v; want a deadline error", n, err)
		}
	})
}

// TestSpliceRefused: where the system refuses to splice (here because
// the "pipe" is a regular file, as some sandboxes refuse sockets),
// ReadToPipe says so having taken nothing from the socket, and
// WriteFromPipe writes the bytes by reading them instead.
func TestSpliceRefused(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	body := pattern(40 << 10)
	if _, err := f.Write(body); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())

	c, _, peer := pair(t)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Write([]byte("socket bytes")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // arrived
	if n, err := c.ReadToPipe(fd, 12); !errors.Is(err, ErrSpliceUnsupported) || n != 0 {
		t.Fatalf("ReadToPipe(regular file) = %d, %v; want 0, ErrSpliceUnsupported", n, err)
	}
	got := make([]byte, 12)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "socket bytes" {
		t.Fatalf("the socket's bytes after the refusal: %q, %v", got, err)
	}

	srv := peer.(*Conn)
	done := make(chan []byte, 1)
	go func() {
		b := make([]byte, 2+len(body))
		if _, err := io.ReadFull(c, b); err != nil {
			b = nil
		}
		done <- b
	}()
	if n, err := srv.WriteFromPipe([]byte("h:"), fd, len(body), false); err != nil || n != 2+len(body) {
		t.Fatalf("WriteFromPipe(regular file) = %d, %v; want %d, nil", n, err, 2+len(body))
	}
	if b := <-done; !bytes.Equal(b, append([]byte("h:"), body...)) {
		t.Fatalf("the peer read %d bytes, intact %v", len(b), b != nil && bytes.Equal(b[2:], body))
	}
}

// TestWriteFromPipeAwaits: a spliced answer that keeps the connection
// (keep) returns once the client's next request has come, as an awaited
// Write does, when the turn's read brought the request's head and nothing
// more; otherwise, or when not kept, it returns once written.
func TestWriteFromPipeAwaits(t *testing.T) {
	const head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name  string
		keep  bool
		sent  string // what the turn's read brings
		waits bool
	}{
		{"kept", true, head, true},
		{"not kept", false, head, false},
		{"more than the head", true, head + "GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, client := awaitPair(t, 5*time.Second)
			sendRequest(t, srv, client, tt.sent)
			body := pattern(64 << 10)
			r := filledPipe(t, 128<<10, body)
			holdHead(t, srv)
			done := make(chan writeResult, 1)
			go func() {
				n, err := srv.WriteFromPipe([]byte("prefix"), r, len(body), tt.keep)
				done <- writeResult{n, err}
			}()
			answered(t, client, "HTTP/1.1 200 OK\r\n\r\nprefix"+string(body))
			if tt.waits {
				stillWaiting(t, done)
				if _, err := client.Write([]byte(head)); err != nil {
					t.Fatal(err)
				}
			}
			returned(t, done, len("prefix")+len(body))
		})
	}
}
