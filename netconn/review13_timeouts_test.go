package netconn

import (
	"io"
	"net"
	"testing"
	"time"
)

// timeoutPair accepts a server Conn through a Listener with the given
// client timeouts and returns it with the client's end.
func timeoutPair(t *testing.T, read, write, idle time.Duration) (*Conn, net.Conn) {
	t.Helper()
	_, srv, client := listenerPair(t, func(nl *Listener) {
		nl.ReadTimeout, nl.WriteTimeout, nl.IdleTimeout = read, write, idle
	})
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	return srv, client
}

// sendAfter writes p on c after d, from another goroutine.
func sendAfter(c net.Conn, d time.Duration, p string) {
	go func() {
		time.Sleep(d)
		_, _ = io.WriteString(c, p)
	}()
}

// TestReview13IdleDeadlineEndsAtFirstByte: once the next request's first
// byte has come, its rest is read under ReadTimeout from then; the idle
// wait's deadline no longer holds, even when it comes sooner (fasthttp's
// ReadTimeout replaces it at the first byte). The Conn used to keep it,
// and the read of the rest failed at the end of the idle timeout. Both
// kinds of idle wait: the read after a yield, and the wait inside the
// answer's write (AwaitNextRequest).
func TestReview13IdleDeadlineEndsAtFirstByte(t *testing.T) {
	for _, await := range []bool{false, true} {
		name := "read"
		if await {
			name = "awaited write"
		}
		t.Run(name, func(t *testing.T) {
			srv, client := timeoutPair(t, 2*time.Second, time.Second, 200*time.Millisecond)
			request(t, srv, client)
			srv.AwaitNextRequest(await)
			sendAfter(client, 100*time.Millisecond, "G") // within idle
			if _, err := srv.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			answered(t, client, "answer")
			buf := make([]byte, 64)
			if n, err := srv.Read(buf); n != 1 || err != nil {
				t.Fatalf("first Read() = %d, %v; want the first byte", n, err)
			}
			sendAfter(client, 250*time.Millisecond, "ET") // past the idle deadline
			start := time.Now()
			if n, err := srv.Read(buf); n != 2 || err != nil {
				t.Fatalf("Read() of the rest = %d, %v after %v; want it (ReadTimeout is 2 s)", n, err, time.Since(start))
			}
		})
	}
}

// TestReview13AnswerAfterPassedWriteDeadline: a write deadline the
// handler set during the turn (a 103's) and that has passed does not
// hold for the answer: AwaitNextRequest, keep-alive or not, gives it
// WriteTimeout afresh, as fasthttp's WriteTimeout did before each answer.
// The Conn used to do so only for answers that keep the connection, and
// the others failed at their first write.
func TestReview13AnswerAfterPassedWriteDeadline(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "closing answer"
		if keep {
			name = "keep-alive answer"
		}
		t.Run(name, func(t *testing.T) {
			srv, client := timeoutPair(t, time.Second, time.Second, time.Second)
			request(t, srv, client)
			if err := srv.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Write([]byte("103 ")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond) // the 103's deadline passes
			srv.AwaitNextRequest(keep)
			if keep {
				sendAfter(client, 50*time.Millisecond, "GET") // ends the wait
			}
			if _, err := srv.Write([]byte("answer")); err != nil {
				t.Fatalf("answer's Write() = %v; want it written under WriteTimeout", err)
			}
			answered(t, client, "103 answer")
		})
	}
}

// TestReview13WriteTimeoutSpansTurns: a client that takes most of
// WriteTimeout to read each long answer is never cut, however many
// answers it reads, one turn each or two pipelined in one turn: each
// answer's write gets its own deadline (AwaitNextRequest, which the proxy
// calls before every answer, starts it afresh, as fasthttp set
// WriteTimeout before each), and a timer left armed for an earlier one
// only makes the write look again. The Conn used to give the answers of
// one turn a single deadline between them, cutting the second pipelined
// one. A client that stops reading is cut after about WriteTimeout.
func TestReview13WriteTimeoutSpansTurns(t *testing.T) {
	const wt = 600 * time.Millisecond
	srv, client := timeoutPair(t, time.Second, wt, time.Second)
	// A fixed receive buffer: autotuning may grow it to tens of MiB.
	if err := client.(*net.TCPConn).SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 8<<20) // more than the socket buffers take
	buf := make([]byte, 64)
	turn := func(i int) {
		t.Helper()
		if _, err := client.Write([]byte("GET")); err != nil {
			t.Fatal(err)
		}
		if n, err := srv.Read(buf); n != 3 || err != nil {
			t.Fatalf("turn %d: server Read() = %d, %v", i, n, err)
		}
	}
	for i := range 3 {
		turn(i)
		for j := range 2 { // two answers, as to pipelined requests
			read := make(chan error, 1)
			go func() {
				time.Sleep(400 * time.Millisecond) // two thirds of WriteTimeout
				_, err := io.ReadFull(client, make([]byte, len(big)))
				read <- err
			}()
			srv.AwaitNextRequest(false)
			if _, err := srv.Write(big); err != nil {
				t.Fatalf("turn %d, answer %d: Write() = %v; want the answer written", i, j, err)
			}
			if err := <-read; err != nil {
				t.Fatalf("turn %d, answer %d: client read: %v", i, j, err)
			}
		}
	}
	turn(3)
	srv.AwaitNextRequest(false)
	start := time.Now()
	if _, err := srv.Write(big); err == nil {
		t.Fatal("Write() to a client that reads nothing succeeded")
	}
	if took := time.Since(start); took < wt-50*time.Millisecond || took > 2*time.Second {
		t.Errorf("write cut after %v, want about %v", took, wt)
	}
}
