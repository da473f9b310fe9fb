package netconn

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// awaitPair accepts a server Conn through a Listener with the given
// IdleTimeout and returns it with the listener and the client's end.
func awaitPair(t *testing.T, idle time.Duration) (*Listener, *Conn, net.Conn) {
	t.Helper()
	return listenerPair(t, func(nl *Listener) { nl.IdleTimeout = idle })
}

// listenerPair accepts a server Conn through a Listener that set has
// configured and returns it with the listener and the client's end; all
// three are closed when the test ends.
func listenerPair(t *testing.T, set func(*Listener)) (*Listener, *Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := NewListener(ln)
	set(nl)
	t.Cleanup(func() { nl.Close() })
	srv, client := dialAccept(t, nl, nil)
	t.Cleanup(func() { client.Close(); srv.Close() })
	return nl, srv, client
}

// dialAccept connects a client to nl with dial (nil: net.Dial with a
// 5 s timeout) and accepts it: the server Conn and the client's end.
func dialAccept(t *testing.T, nl *Listener, dial func(network, addr string) (net.Conn, error)) (*Conn, net.Conn) {
	t.Helper()
	if dial == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		dial = d.Dial
	}
	client, err := dial("tcp", nl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := nl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Conn), client
}

// request plays one turn: the client sends a request, the server reads it
// whole (so its socket is empty) and the client is left to answer.
func request(t *testing.T, srv *Conn, client net.Conn) {
	t.Helper()
	sendRequest(t, srv, client, "GET")
}

// sendRequest has the client send req and the server read it, whole in
// one read.
func sendRequest(t *testing.T, srv *Conn, client net.Conn, req string) {
	t.Helper()
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := srv.Read(buf); n != len(req) || err != nil {
		t.Fatalf("server Read() = %d, %v; want the %d-byte request", n, err, len(req))
	}
}

type writeResult struct {
	n   int
	err error
}

// writeAsync writes p on c from another goroutine.
func writeAsync(c *Conn, p []byte) <-chan writeResult {
	done := make(chan writeResult, 1)
	go func() {
		n, err := c.Write(p)
		done <- writeResult{n, err}
	}()
	return done
}

// stillWaiting fails the test if the write has returned: an awaited write
// returns only once its wait ends. A short look: it can miss a write that
// returns too early, never flag one that does not.
func stillWaiting(t *testing.T, done <-chan writeResult) {
	t.Helper()
	select {
	case r := <-done:
		t.Fatalf("awaited Write returned (%d, %v) before its wait ended", r.n, r.err)
	case <-time.After(30 * time.Millisecond):
	}
}

// returned waits, at most 5 s, for the write to return whole.
func returned(t *testing.T, done <-chan writeResult, want int) {
	t.Helper()
	select {
	case r := <-done:
		if r.n != want || r.err != nil {
			t.Fatalf("Write() = %d, %v; want %d, nil", r.n, r.err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write still waiting after 5 s")
	}
}

// answered reads the answer at the client.
func answered(t *testing.T, client net.Conn, answer string) {
	t.Helper()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(answer))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != answer {
		t.Fatalf("client read %q, %v; want %q", got, err, answer)
	}
}

// TestAwaitNextRequest: an answer that keeps the connection open is
// written and then waited on, inside Write, until the client's next
// request, its close, the idle timeout or a drain; what the read after it
// gets is what a plain read would have got.
func TestAwaitNextRequest(t *testing.T) {
	tests := []struct {
		name string
		idle time.Duration
		// end ends the wait, from the client's side or the listener's.
		end func(t *testing.T, nl *Listener, client net.Conn)
		// check is the server's next read, under the deadline a server
		// sets after an answer (far off).
		check func(t *testing.T, srv *Conn, client net.Conn)
	}{
		{
			name: "next request",
			idle: time.Minute,
			end: func(t *testing.T, _ *Listener, client net.Conn) {
				if _, err := client.Write([]byte("NEXT")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				buf := make([]byte, 64)
				if n, err := srv.Read(buf); string(buf[:n]) != "NEXT" || err != nil {
					t.Fatalf("Read() = %q, %v; want the next request", buf[:n], err)
				}
			},
		},
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
			name: "idle timeout",
			idle: 100 * time.Millisecond,
			end:  func(*testing.T, *Listener, net.Conn) {}, // the client stays silent
			check: func(t *testing.T, srv *Conn, _ net.Conn) {
				// The wait was the idle time: the read fails at once,
				// not after the minute the server asked for.
				done := make(chan error, 1)
				go func() {
					_, err := srv.Read(make([]byte, 64))
					done <- err
				}()
				select {
				case err := <-done:
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("Read() error = %v, want a deadline error", err)
					}
				case <-time.After(5 * time.Second):
					srv.Conn.Close()
					<-done
					t.Fatal("Read after an idle wait still waiting after 5 s")
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
				// The drain ended the wait, not the connection's deadline:
				// a request that comes later is read.
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
			request(t, srv, client)
			srv.AwaitNextRequest(true)
			done := writeAsync(srv, []byte("ANSWER"))
			answered(t, client, "ANSWER")
			if tt.idle >= time.Second {
				stillWaiting(t, done)
			}
			tt.end(t, nl, client)
			returned(t, done, len("ANSWER"))
			if err := srv.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			tt.check(t, srv, client)
		})
	}
}

// TestAwaitSkipped: where waiting is not safe or not asked for, the
// answer's write returns at once, with the client silent and the idle
// timeout a minute away.
func TestAwaitSkipped(t *testing.T) {
	tests := []struct {
		name string
		idle time.Duration
		// prepare runs after the request was read (or, with fill, read
		// in part) and before the answer is written.
		prepare func(nl *Listener, srv *Conn)
		fill    bool
		answer  int
	}{
		{"not asked", time.Minute, func(*Listener, *Conn) {}, false, 10},
		{"answer closes", time.Minute, func(_ *Listener, c *Conn) { c.AwaitNextRequest(false) }, false, 10},
		{"no idle timeout", 0, func(_ *Listener, c *Conn) { c.AwaitNextRequest(true) }, false, 10},
		{"request not read to the end", time.Minute, func(_ *Listener, c *Conn) { c.AwaitNextRequest(true) }, true, 10},
		{"listener draining", time.Minute, func(nl *Listener, c *Conn) { c.AwaitNextRequest(true); nl.Drain() }, false, 10},
		{"lingering close", time.Minute, func(_ *Listener, c *Conn) { c.AwaitNextRequest(true); c.LingerOnClose() }, false, 10},
		{"100 Continue", time.Minute, func(_ *Listener, c *Conn) { c.AwaitNextRequest(true); c.ExpectBody() }, false, 10},
		{"full server buffer", time.Minute, func(_ *Listener, c *Conn) { c.AwaitNextRequest(true) }, false, ServerWriteBufferSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nl, srv, client := awaitPair(t, tt.idle)
			if tt.fill {
				// The read fills its buffer: the socket may hold more.
				if _, err := client.Write([]byte("GET /more")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(srv, make([]byte, 3)); err != nil {
					t.Fatal(err)
				}
			} else {
				request(t, srv, client)
			}
			tt.prepare(nl, srv)
			answer := make([]byte, tt.answer)
			done := writeAsync(srv, answer)
			returned(t, done, len(answer))
			if srv.awaiting.Load() || srv.waited {
				t.Error("the write waited")
			}
		})
	}
}

// TestAwaitHeldWrite: a long answer whose first write is held waits after
// the second when that is the server's last flush (shorter than its
// buffer); not after a full buffer (the middle of a pipelined answer) nor
// after a longer write straight from the body, which the server makes
// before it looks for a pipelined request in its reader, unless the turn
// read a request head and nothing more (TestAwaitAfterLongBody; here the
// turn read no head).
func TestAwaitHeldWrite(t *testing.T) {
	for _, tt := range []struct {
		rest int
		wait bool
	}{
		{3000, true},
		{ServerWriteBufferSize, false},
		{9000, false},
	} {
		t.Run(strconv.Itoa(tt.rest), func(t *testing.T) {
			_, srv, client := awaitPair(t, time.Minute)
			request(t, srv, client)
			heldAnswer(t, srv, client, tt.rest, tt.wait)
		})
	}
}

// TestAwaitedReadDoesNotYield: the read after a wait that ended with the
// request readable goes straight to it, where a read after an answer that
// did not wait yields first (TestServerConnYields).
func TestAwaitedReadDoesNotYield(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, srv, client := awaitPair(t, time.Minute)
	request(t, srv, client)
	srv.AwaitNextRequest(true)
	done := writeAsync(srv, []byte("ANSWER"))
	answered(t, client, "ANSWER")
	if _, err := client.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	returned(t, done, len("ANSWER"))
	var ran atomic.Bool
	go ran.Store(true)
	buf := make([]byte, 64)
	if n, err := srv.Read(buf); string(buf[:n]) != "GET" || err != nil {
		t.Fatalf("Read() = %q, %v", buf[:n], err)
	}
	if ran.Load() {
		t.Fatal("the read after a wait that found the request yielded first")
	}
}

// TestAwaitSeesWhatCameFirst: a client may send its next request before
// the answer to the last one is written (pipelining), or half-close its
// side after a request; the poller reports either before the answer's
// write, and RawConn.Read, inside which the write waits, forgets that
// readiness first. The wait must end at once all the same, not at the idle
// timeout: a pipelined request would sit unread until then and be lost
// (the read after an idle wait fails), and a half-closed connection
// would be held open that long.
func TestAwaitSeesWhatCameFirst(t *testing.T) {
	tests := []struct {
		name string
		// before is what the client does once the server has read the
		// request and before the answer is written.
		before func(t *testing.T, client net.Conn)
		// check is the server's next read.
		check func(t *testing.T, srv *Conn)
	}{
		{
			name: "pipelined request",
			before: func(t *testing.T, client net.Conn) {
				if _, err := client.Write([]byte("NEXT")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn) {
				buf := make([]byte, 64)
				if n, err := srv.Read(buf); string(buf[:n]) != "NEXT" || err != nil {
					t.Fatalf("Read() = %q, %v; want the pipelined request", buf[:n], err)
				}
			},
		},
		{
			name: "half-close",
			before: func(t *testing.T, client net.Conn) {
				if err := client.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, srv *Conn) {
				if n, err := srv.Read(make([]byte, 64)); n != 0 || err != io.EOF {
					t.Fatalf("Read() = %d, %v; want 0, EOF", n, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, client := awaitPair(t, time.Minute)
			request(t, srv, client)
			tt.before(t, client)
			// The handler's time: the poller takes the readiness meanwhile.
			time.Sleep(50 * time.Millisecond)
			srv.AwaitNextRequest(true)
			done := writeAsync(srv, []byte("ANSWER"))
			answered(t, client, "ANSWER")
			returned(t, done, len("ANSWER"))
			if err := srv.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			tt.check(t, srv)
		})
	}
}

// TestAwaitKeepsNoHeldBuffer: a connection waiting for its client's next
// request after a long answer (its first write held, HoldNextWrite) keeps
// no held buffer meanwhile, as no idle connection does: connections that
// go idle one after another share the listener's pool of them, instead of
// each keeping one (4 KiB, or 16 KiB once a lingering close grew it) for
// as long as its client idles.
func TestAwaitKeepsNoHeldBuffer(t *testing.T) {
	const conns = 64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := NewListener(ln)
	nl.IdleTimeout = time.Minute
	t.Cleanup(func() { nl.Close() })
	srvs := make([]*Conn, conns)
	clients := make([]net.Conn, conns)
	for i := range conns {
		client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := nl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		srvs[i], clients[i] = c.(*Conn), client
		t.Cleanup(func() { client.Close(); c.Close() })
		request(t, srvs[i], client)
	}
	first, rest := patterned(ServerWriteBufferSize, 1), patterned(3000, 2)
	got := make([]byte, len(first)+len(rest))
	dones := make([]<-chan writeResult, conns)
	// No collection empties the pool meanwhile.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i, srv := range srvs {
		srv.AwaitNextRequest(true)
		srv.HoldNextWrite()
		if n, err := srv.Write(first); n != len(first) || err != nil {
			t.Fatalf("held Write() = %d, %v", n, err)
		}
		dones[i] = writeAsync(srv, rest)
		_ = clients[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(clients[i], got); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	stillWaiting(t, dones[conns-1])
	for i := range srvs {
		if _, err := clients[i].Write([]byte("NEXT")); err != nil {
			t.Fatal(err)
		}
		returned(t, dones[i], len(rest))
	}
	// A buffer kept by each waiting connection is 4 KiB a connection;
	// shared, a few in all (more under the race detector, whose pool
	// drops a quarter of what it is given). The rest, under 1 KiB, is the
	// writes' goroutines and channels.
	perConn := (after.TotalAlloc - before.TotalAlloc) / conns
	t.Logf("%d bytes allocated per connection", perConn)
	if perConn >= ServerWriteBufferSize {
		t.Fatalf("%d bytes allocated per connection answered and waiting; want under the %d of a held buffer each",
			perConn, ServerWriteBufferSize)
	}
}

// TestAwaitAfterLongBody: the write of a long body straight from it (longer
// than the server's buffer, after the held first write) ends the answer
// but comes before the server looks in its reader for a pipelined request,
// which netconn cannot see: it waits only when the turn read no more than
// the request's head (a request with no body, nothing behind it), and
// never when the server read more.
func TestAwaitAfterLongBody(t *testing.T) {
	const head = "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
	for _, tt := range []struct {
		name string
		sent string
		wait bool
	}{
		{"head alone", head, true},
		{"pipelined request behind it", head + head, false},
		{"a body with it", "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, client := awaitPair(t, time.Minute)
			if _, err := client.Write([]byte(tt.sent)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			if n, err := io.ReadAtLeast(srv, buf, len(tt.sent)); n != len(tt.sent) || err != nil {
				t.Fatalf("server read %d, %v; want the %d bytes sent", n, err, len(tt.sent))
			}
			heldAnswer(t, srv, client, 9000, tt.wait)
		})
	}
}

// TestDrainEndsWaitBeingArmed: Listener.Drain ends a wait for the next
// request that is about to begin as surely as one that has. Drain fires
// the read timer now (interruptAwait); a wait whose idle deadline is
// earlier than the one armed (a read deadline set long after the idle
// timeout, as client_read over timeouts.idle gives) arms it under the
// same lock, and when Drain's turn came first that arming undid it: the
// wait ran on to the idle timeout and held a graceful stop. The window
// is a few hundred nanoseconds; many tries, the drain started at varied
// points against the answer's write, find it (about 15 in 20000 before
// the fix).
func TestDrainEndsWaitBeingArmed(t *testing.T) {
	tries := 20000
	if testing.Short() {
		tries = 2000
	}
	for i := range tries {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nl := NewListener(ln)
		nl.IdleTimeout = time.Minute
		srv, client := dialAccept(t, nl, nil)
		request(t, srv, client)
		if err := srv.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		srv.AwaitNextRequest(true)
		start := make(chan struct{})
		done := writeAsyncAfter(srv, []byte("ANSWER"), start)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			<-start
			spin(i % 200 * 20)
			_ = nl.Drain()
		}()
		close(start)
		answered(t, client, "ANSWER")
		<-drained
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
		case <-time.After(time.Second):
			client.Close()
			<-done
			srv.Close()
			t.Fatalf("try %d: the answer's write still waited 1 s after Drain", i)
		}
		client.Close()
		srv.Close()
	}
}

// writeAsyncAfter is writeAsync once start is closed.
func writeAsyncAfter(c *Conn, p []byte, start <-chan struct{}) <-chan writeResult {
	done := make(chan writeResult, 1)
	go func() {
		<-start
		n, err := c.Write(p)
		done <- writeResult{n, err}
	}()
	return done
}

// spinSink keeps spin's loop from being optimized away.
var spinSink atomic.Int64

// spin busies the processor for about n additions.
func spin(n int) {
	x := 0
	for j := range n {
		x += j
	}
	spinSink.Store(int64(x))
}

// heldAnswer writes a long answer that waits if it may: a full buffer,
// held, then rest bytes. The write of the rest must return at once, or,
// with wait, only once the client sends its next request.
func heldAnswer(t *testing.T, srv *Conn, client net.Conn, rest int, wait bool) {
	t.Helper()
	srv.AwaitNextRequest(true)
	srv.HoldNextWrite()
	first, second := patterned(ServerWriteBufferSize, 1), patterned(rest, 2)
	returned(t, writeAsync(srv, first), len(first))
	done := writeAsync(srv, second)
	answered(t, client, string(first)+string(second))
	if !wait {
		returned(t, done, len(second))
		return
	}
	stillWaiting(t, done)
	if _, err := client.Write([]byte("NEXT")); err != nil {
		t.Fatal(err)
	}
	returned(t, done, len(second))
}
