package netconn

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Spliced bodies. A long response body can pass through the proxy without
// being copied into its memory and out again: splice(2) moves it from the
// upstream socket into a pipe (ReadToPipe) and, when the answer is
// written, from the pipe to the client's socket (WriteFromPipe). The
// kernel hands pages over instead of copying 2 × the body through user
// space, which is most of the proxy's own work for 64 KiB answers.

// spliceFlags: move pages where the kernel can; never block (the sockets
// are non-blocking, the pipe is made so by the flag).
const spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK

// ErrPipeFull ends ReadToPipe when the pipe took less than asked while
// the socket still had data: its slots (one page fragment each) ran out.
// The caller reads the rest another way.
var ErrPipeFull = errors.New("netconn: pipe full")

// ErrSpliceUnsupported ends ReadToPipe, having moved nothing, where the
// system cannot splice from the socket (some sandboxes' kernels): the
// caller reads the body instead, and need not try again.
var ErrSpliceUnsupported = errors.New("netconn: splice unsupported")

// unsupported reports whether e is a splice's refusal of the descriptors
// themselves, not a failure of the connection.
func unsupported(e syscall.Errno) bool {
	return e == syscall.EINVAL || e == syscall.ENOSYS || e == syscall.EOPNOTSUPP
}

// pipeIO is the state of one splice: the pipe end, what is left to move,
// and the outcome.
type pipeIO struct {
	pipe int
	left int
	done int
	eof  bool
	full bool
	err  syscall.Errno
}

// refused reports whether the splice failed at its first byte for the
// descriptors' sake (unsupported).
func (s *pipeIO) refused() bool { return s.done == 0 && unsupported(s.err) }

// ReadToPipe moves n bytes from c, a socket, into the pipe whose write end
// is w, waiting for them under the read deadline as Read does. It returns
// how many were moved: n, or fewer with an error (io.ErrUnexpectedEOF for
// an end of stream, ErrPipeFull when the pipe had no room left while the
// socket had data: the caller reads the rest another way).
func (c *Conn) ReadToPipe(w, n int) (int, error) {
	if c.sys == nil {
		return 0, ErrSpliceUnsupported // not a socket
	}
	c.sp = pipeIO{pipe: w, left: n}
	defer func() {
		// Bytes came, whatever ended the splice (ResponseBegun).
		if c.sp.done > 0 {
			c.answered, c.received = true, true
		}
	}()
	for c.sp.left > 0 && !c.sp.eof && !c.sp.full && c.sp.err == 0 {
		err := c.sys.Read(c.spliceIn1)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.rearm(&c.read, true) {
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.readTimedOut = true
			}
			return c.sp.done, c.opError("read", err)
		}
	}
	done := c.sp.done
	switch {
	case c.sp.refused():
		return 0, ErrSpliceUnsupported
	case c.sp.err != 0:
		if c.sp.err == syscall.ECONNRESET {
			c.ended = true // a reset, not an orderly close (sawEOF)
		}
		return done, c.opError("read", os.NewSyscallError("splice", c.sp.err))
	case c.sp.eof:
		c.ended, c.sawEOF = true, true
		return done, io.ErrUnexpectedEOF
	case c.sp.full:
		return done, ErrPipeFull
	}
	// The splice took exactly what the body had left: whatever comes
	// after it is unsolicited, found by the idle check before the next
	// request (checkIdle), not by a wait this read already consumed.
	c.unread.Store(false)
	return done, nil
}

// spliceIn is RawConn.Read's callback for ReadToPipe: false asks to wait
// for the socket to become readable.
func (c *Conn) spliceIn(fd uintptr) bool {
	s := &c.sp
	for s.left > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, fd, 0, uintptr(s.pipe), 0, uintptr(s.left), spliceFlags)
		switch e {
		case 0:
			if n == 0 {
				s.eof = true
				return true
			}
			s.left -= int(n)
			s.done += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			// The socket is empty, or the pipe has no slot left: a
			// look at the socket tells which.
			// A socket at its end (a close or a reset waiting behind
			// the bytes the pipe had no room for) ends the splice too:
			// its readiness was reported already and will not come again.
			var one [1]byte
			m, _, pe := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&one[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch {
			case pe == 0 && m > 0:
				s.full = true
			case pe == 0:
				s.eof = true
			case pe == syscall.EAGAIN || pe == syscall.EINTR:
				return false
			default:
				s.err = pe
			}
			return true
		default:
			s.err = e
			return true
		}
	}
	return true
}

// WriteFromPipe writes what a server Conn holds (HoldNextWrite: the
// answer's head), then head, then n bytes from the pipe whose read end is
// r, as the answer's body. It returns how much of head and the pipe's
// bytes went out. keep says the answer keeps the connection open: as
// AwaitNextRequest would have it, the write then returns once the next
// request has come (awaitingWrite), and what the answer was lent
// (LendToAnswer) is given back before that wait, once all is written.
// (AwaitNextRequest itself must be told false for such an answer: the
// server's flush of the head would wait instead.)
func (c *Conn) WriteFromPipe(head []byte, r, n int, keep bool) (int, error) {
	h := c.held
	c.held, c.hold = nil, false
	// The splice ends the answer, whatever the head's write looked like
	// (a full server buffer flushed alone is not the middle of one).
	c.midAnswer = false
	defer c.releaseHeld()
	c.wr = rawIO{} // writeWait counts c.sent, which the splice keeps
	c.sp = pipeIO{pipe: r, left: n}
	if c.sys == nil {
		c.sp.err = syscall.EINVAL // not a socket: copied (refused)
	}
	var m int
	var err error
	// Only when the turn's read brought the request's head and nothing
	// after it (headOnly): a pipelined request may wait in the server's
	// reader, where the socket's readiness does not show it (see Write).
	awaited := keep && c.headOnly && c.canAwait() && len(h)+len(head) > 0
	if awaited {
		c.spliceStep = true
		m, err = c.awaitingWrite(h, head)
		c.spliceStep = false
	} else if len(h)+len(head) > 0 {
		m, err = c.writeAll(h, head)
	}
	written := max(m-len(h), 0)
	if err != nil {
		return written, err
	}
	if awaited && (c.sp.left > 0 && c.sp.err == 0 || c.sp.refused()) {
		// No wait: the socket filled before the pipe was through, or
		// the system refused to splice to it. The idle time starts once
		// the answer is written, below.
		defer c.idleFromNow()
	}
	for c.sp.left > 0 && c.sp.err == 0 {
		err := c.sys.Write(c.spliceOut1)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.rearm(&c.write, false) {
				continue
			}
			c.noteSpliced()
			return written + c.sp.done, c.opError("write", err)
		}
	}
	c.noteSpliced()
	if c.sp.refused() {
		m, err := c.copyFromPipe(r, n)
		if err == nil {
			c.giveBack()
		}
		return written + m, err
	}
	if c.sp.err != 0 {
		return written + c.sp.done, c.opError("write", os.NewSyscallError("splice", c.sp.err))
	}
	// All of it went: what the answer was lent (the pipe) goes back now,
	// not at the next read, which a connection that closes after this
	// answer never makes (found by review: each such answer left its
	// pipe to the garbage collector, and a new one was made).
	c.giveBack()
	return written + c.sp.done, nil
}

// idleFromNow starts the wait for the next request's idle time now, for
// the read that follows (see awaitingWrite).
func (c *Conn) idleFromNow() {
	until := int64(time.Since(c.base) + c.ln.IdleTimeout)
	_ = c.set(&c.read, c.base.Add(time.Duration(until)), true)
	c.awaitUntil, c.waited = until, false
}

// noteSpliced records a splice's bytes as written.
func (c *Conn) noteSpliced() {
	if c.sp.done > 0 && c.yield {
		c.wrote.Store(true)
	}
}

// copyFromPipe writes n bytes from the pipe r by reading them, where the
// system refused to splice to the socket.
func (c *Conn) copyFromPipe(r, n int) (int, error) {
	buf := make([]byte, min(n, 64<<10))
	written := 0
	for written < n {
		k, err := syscall.Read(r, buf[:min(len(buf), n-written)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k == 0 {
			return written, c.opError("write", io.ErrUnexpectedEOF)
		}
		m, err := c.writeAll(buf[:k], nil)
		written += m
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// spliceOut is RawConn.Write's callback for WriteFromPipe: false asks to
// wait for room.
func (c *Conn) spliceOut(fd uintptr) bool {
	s := &c.sp
	for s.left > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(s.pipe), 0, fd, 0, uintptr(s.left), spliceFlags)
		switch e {
		case 0:
			if n == 0 {
				// The pipe is empty before its bytes were all moved:
				// its writer lied about them.
				s.err = syscall.EPIPE
				return true
			}
			s.left -= int(n)
			s.done += int(n)
			c.sent += uint64(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			if c.timeouts.on {
				c.writeWait()
			}
			return false
		default:
			s.err = e
			return true
		}
	}
	return true
}
