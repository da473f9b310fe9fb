package netconn

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// persistentErrListener is a real listener whose Accept fails with errno
// every time until it is closed, as accept(2) does when a BPF LSM program
// (KubeArmor, Tetragon-style policies return -EPERM) or a seccomp
// SECCOMP_RET_ERRNO(EPERM) filter refuses accept itself: the LSM hook
// (security_socket_accept) runs before the connection is taken off the
// queue, so the same queued connection fails again at once, forever.
type persistentErrListener struct {
	net.Listener
	errno  syscall.Errno
	calls  atomic.Int64
	closed atomic.Bool
}

func (l *persistentErrListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", l.errno)}
}

func (l *persistentErrListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

// Found by review. What was wrong: Listener.Accept (conn.go, the connectionError branch) retries an
// error it takes for one connection's at once, with no wait, however many
// times in a row it comes. An error that is not one connection's but
// keeps coming (EPERM from a BPF LSM or seccomp rule that refuses accept
// itself: the connection stays queued and every accept fails the same
// way) turns Accept into a hot loop: one core at 100% for good, the
// listener accepting nothing, and /readyz still 200, since fasthttp never
// sees the error (README: "Any other accept error stops the proxy
// listener ... and /readyz turns 503"). Before the change fasthttp stopped
// serving; net/http returns such an error too. Expected: skipped errors
// that repeat without a connection in between are waited out like
// EMFILE (5 ms doubling to 1 s), or returned after a bound, so that
// Accept does not spin: here well under 1000 inner accepts in 300 ms.
// Actual: millions. Fix: count consecutive connectionError results and,
// past a few (say 8), apply the same backoff as exhausted (the wait ends
// at Close), resetting the count on a successful accept.
func TestAcceptPersistentConnectionErrorDoesNotSpin(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inner := &persistentErrListener{Listener: tcp, errno: syscall.EPERM}
	ln := NewListener(inner)
	var notices atomic.Int32
	ln.OnAcceptError = func(error, time.Duration) { notices.Add(1) }
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	calls := inner.calls.Load()
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept() after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not return within 3 s of Close")
	}
	if calls > 1000 {
		t.Errorf("a persistent EPERM made Accept call accept %d times in 300 ms (%d notices): a busy loop; want a growing wait between tries",
			calls, notices.Load())
	}
}
