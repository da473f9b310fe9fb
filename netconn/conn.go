// Package netconn wraps the proxy's TCP connections for request/response
// traffic. Two costs of Go's netpoller showed up in profiles of sluice
// under load, and both are paid per request:
//
// Deadlines. fasthttp sets a read and a write deadline for every request it
// serves or sends (five per proxied request). Each update reads the clock
// three times and moves a runtime timer under a lock. A Conn only records
// the deadline it is given; the timer moves only when the new deadline is
// earlier than the armed one. A later deadline leaves the earlier timer
// armed: when it fires, Read or Write sees that the deadline it was last
// given has not passed, arms the timer at that deadline and carries on.
// Deadlines keep their meaning: an operation fails with
// os.ErrDeadlineExceeded once, and only once, the last deadline set for its
// direction has passed. On a busy connection the timer moves about once per
// timeout instead of once per request. (nginx keeps its timers lazily for
// the same reason.)
//
// Reads that find nothing. A Go read tries the socket first and parks only
// when it returns EAGAIN. After a server writes a response, the next read
// on that connection, for the next request, nearly always finds nothing:
// the client has not even received the response yet. On a Conn made by
// NewServer (and by Listener), the first read after a write first yields
// the processor, so that requests already in flight run before this
// goroutine asks the socket; by then the next request has often arrived.
// Under load this removes most of those empty reads (make bench, scenario
// a: reads per request 4 → 2.4 with the yield on both sides). It is not
// done on upstream connections: there the goroutine holds a request in
// flight, and putting it behind new work raised p99 latency.
//
// A Conn serves one reader and one writer at a time, like fasthttp's use of
// a connection. Its state is atomic, so a deadline set from another
// goroutine is never torn, only possibly reordered with one set at the
// same moment.
package netconn

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// Conn is a net.Conn with lazy deadlines and, for server connections, a
// yield before the first read after a write (see the package doc).
type Conn struct {
	net.Conn
	read, write direction
	// yield is set for server connections; wrote records a write since
	// the last read.
	yield bool
	wrote atomic.Bool
}

// direction is one direction's deadline state, in Unix nanoseconds; 0 means
// no deadline.
type direction struct {
	// want is the deadline the caller set last.
	want atomic.Int64
	// armed is the deadline the runtime timer holds; never later than want
	// while want is set.
	armed atomic.Int64
}

// New wraps c with lazy deadlines (for connections to upstreams).
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// NewServer wraps c with lazy deadlines and the yield before reading the
// next request (for connections a server accepted).
func NewServer(c net.Conn) *Conn { return &Conn{Conn: c, yield: true} }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline records t for reads; it moves the runtime timer only when
// t is earlier than the armed deadline, or no deadline is armed.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if arm, ok := c.read.set(t); ok {
		return c.Conn.SetReadDeadline(arm)
	}
	return nil
}

// SetWriteDeadline records t for writes, like SetReadDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if arm, ok := c.write.set(t); ok {
		return c.Conn.SetWriteDeadline(arm)
	}
	return nil
}

// set records t and reports whether the runtime timer must move, and to
// what.
func (d *direction) set(t time.Time) (time.Time, bool) {
	if t.IsZero() {
		d.want.Store(0)
		if d.armed.Swap(0) == 0 {
			return time.Time{}, false
		}
		return time.Time{}, true
	}
	n := t.UnixNano()
	d.want.Store(n)
	if a := d.armed.Load(); a != 0 && a <= n {
		// The armed timer fires at or before t; if before, the operation
		// it interrupts re-arms it (rearm).
		return time.Time{}, false
	}
	d.armed.Store(n)
	return t, true
}

// rearm is called when an operation failed with a deadline error. It
// reports whether the caller's deadline is still ahead, in which case the
// timer was early and now holds that deadline: the operation is to be
// retried.
func (d *direction) rearm(set func(time.Time) error) bool {
	want := d.want.Load()
	if want == 0 {
		// No deadline any more, yet one fired: clear the timer.
		d.armed.Store(0)
		return set(time.Time{}) == nil
	}
	if time.Now().UnixNano() >= want {
		return false
	}
	d.armed.Store(want)
	return set(time.Unix(0, want)) == nil
}

// Read reads from the connection, retrying when a timer armed for an
// earlier deadline fired before the current one.
func (c *Conn) Read(p []byte) (int, error) {
	if c.yield && c.wrote.Load() {
		c.wrote.Store(false)
		runtime.Gosched()
	}
	for {
		n, err := c.Conn.Read(p)
		// A deadline error comes before anything is read: retrying
		// loses nothing.
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !c.read.rearm(c.Conn.SetReadDeadline) {
			return n, err
		}
	}
}

// Write writes p whole unless an error other than an early timer stops it.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(p[written:])
		written += n
		if c.yield && n > 0 {
			c.wrote.Store(true)
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !c.write.rearm(c.Conn.SetWriteDeadline) {
			return written, err
		}
	}
}

// Listener wraps every connection it accepts with NewServer.
type Listener struct {
	net.Listener
}

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewServer(c), nil
}
