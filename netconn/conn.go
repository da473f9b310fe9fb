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
// os.ErrDeadlineExceeded when, and only when, the last deadline set for its
// direction has passed (measured on the monotonic clock). On a busy
// connection the timer moves about once per timeout instead of once per
// request. (nginx keeps its timers lazily for the same reason.)
//
// A Listener given the server's client timeouts (ReadTimeout, WriteTimeout,
// IdleTimeout) goes further for the connections it accepts: they apply
// those timeouts themselves, and the server sets none. A deadline is set
// only when a read or a write has to wait, from a clock reading made then;
// one that does not wait needs none. fasthttp's server would read the
// clock and set a deadline three times per request.
//
// Reads that find nothing. A Go read tries the socket first and parks only
// when it returns EAGAIN. In a proxy both reads that follow a write nearly
// always find nothing: the next request on a client connection after a
// response, the response on an upstream connection after a request
// (perf stat, scenario a of make bench: 4 reads per request against nginx's
// 2 recv). Two remedies, one per side:
//
//   - Upstream (NewClient): the write that ends a request is made inside
//     RawConn.Read, which first makes the poller forget earlier readiness,
//     and returns only once the socket is readable. This is done only when
//     the last read emptied the socket and the whole request goes out in
//     this write: then the response cannot have started, its readiness
//     cannot come and go before the wait, and the read that follows finds
//     it. (A long request, which a backend may answer early, is written
//     the usual way.) The goroutine parks where it would have parked
//     anyway, so request order is unchanged.
//   - Client (NewServer): the first read after a write yields the
//     processor, so that requests already in flight run before this
//     goroutine asks the socket, by when the next request has often
//     arrived. (A yield on the upstream side too was measured and
//     dropped: it put requests in flight behind new ones and raised p99.)
//     Or, once the server says that the answer keeps the connection open
//     (AwaitNextRequest), the write that ends it is made inside
//     RawConn.Read and returns once the client's next request is
//     readable, the client closes, the listener's idle timeout passes (the
//     read that follows then fails as the server's idle read would) or
//     the listener drains (Drain ends the waits, so that the server sees
//     the connections idle and closes them). Unlike a backend, a client
//     may send before the answer is written (a pipelined request, a
//     half-close), so the write is followed by one recv(MSG_PEEK) before
//     the wait. That look costs more than the yield's reads that find
//     nothing after a short answer, and less after a long one: sluice's
//     handler asks the wait for answers of 4 KiB or more whose body is
//     not lent (LendToAnswer: the waiting write would hold the loan), and
//     has the others' next read skip the yield (SkipYield; README,
//     Performance). An answer that closes the connection, a long body the
//     server lets go after the write, a request not read to the end, a
//     long body written straight after a read that brought more than the
//     request's head: those never wait.
//
// Together: 2.1 reads and 1.9 writes per request in scenario a.
//
// Request bodies. WriteRequest sends a request's head and its body with
// one sendmsg, so that the body goes out from the request that holds it
// instead of being copied into the client's write buffer first; on a
// NewClient connection it is the end of a request, as above.
//
// Bodies that come with their head. A server Conn's first read of a turn
// returns at most FirstReadSize bytes: the head, and little of a body
// behind it, which the server would copy out of its read buffer; the rest
// is read straight into the request's body (see FirstReadSize).
//
// Long responses. fasthttp sends a response longer than its write buffer
// with one writev, but only on a bare *net.TCPConn; through a wrapper it
// takes two writes (the full buffer, then the rest), one more syscall and
// one more loopback segment per response. The handler, which knows the
// response is that long, calls HoldNextWrite: the full buffer is copied
// and sent with the rest in one sendmsg (scenario c: 3 writes per request
// become a sendto and a sendmsg).
//
// System calls. Reads and writes on a socket are made with raw system
// calls inside RawConn's callbacks: on a non-blocking socket they never
// block, so the scheduler's bookkeeping around a system call (entersyscall,
// exitsyscall) buys nothing, and it was about 2% of the CPU. RawConn keeps
// the descriptor's lock and the poller's wait; errors are reported as
// net.Conn reports them. They are the socket calls (recvfrom, sendto,
// sendmsg), as HAProxy's, not read, write and writev: those pass through
// the file layer first (the file position lock, the permission hooks)
// for nothing on a socket; sendto and sendmsg also take MSG_NOSIGNAL, so
// a write to a closed peer is an EPIPE without a SIGPIPE first.
//
// Idle upstream connections. A kept-alive client connection may have been
// closed by the peer, or been sent bytes nobody asked for, while it sat in
// the pool; an HTTP client would then fail the request, or read those
// bytes as its response. NewClient connections look first (one
// recv(MSG_PEEK) before each request, the price of this check) and fail
// the request's first write with nothing sent (ErrIdleClosed,
// ErrUnsolicited). A close that comes just after that look is told
// afterwards: RequestUnreceived sees from the peer's acknowledgements
// that none of the request reached it.
//
// Early answers. A server may answer an upload it refuses before reading
// it and stop reading, without closing. A client connection's write of a
// request that waits for room looks at what the peer sent each time it
// would wait, and every answerWatch while it waits: a final answer, a
// close or a reset fails the write with ErrAnsweredEarly, and the answer
// is there to be read. Only writes that wait pay for the look.
//
// Request heads that end in a bare LF. fasthttp's server waits for the
// CRLFCRLF that ends a head; one that ends "\n\n" would wait for the read
// timeout. A server Conn watches each turn's head (headWatch) and fails
// the read that would wait, with ErrBareLFHead.
//
// Accept errors. Listener waits out running out of file descriptors, and
// skips an error about one connection, instead of passing the error to a
// server that would stop.
//
// Closing after an error response. A server that answers a request it
// did not read to the end (413 for a body over the limit, 431) and then
// closes makes the kernel send a reset, not a FIN, as the peer's unread
// bytes are thrown away; a client still sending its body meets that reset
// and usually reports it instead of the answer, and on a real network the
// reset can overtake the answer itself. LingerOnClose makes Close first
// send a FIN and read and discard what the peer still sends, as nginx's
// lingering close does.
//
// A Conn serves one reader and one writer at a time, like fasthttp's use of
// a connection. Deadlines may be set from any goroutine: the last one set
// wins, as with net.Conn.
package netconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Conn is a net.Conn with lazy deadlines and, for server connections, an
// answer's write that waits for the next request or else a yield before
// the first read after a write, for client connections a request write
// that waits for the response (see the package doc).
type Conn struct {
	net.Conn
	// base is when the Conn was made: deadlines are kept as monotonic
	// offsets from it, so a wall-clock step moves none of them.
	base        time.Time
	read, write direction
	// yield is set for server connections; wrote records a write since
	// the last read.
	yield bool
	wrote atomic.Bool
	// Server connections, for AwaitNextRequest: await says the answer
	// being written keeps the connection open, so the write that ends it
	// may wait for the next request (awaitingWrite); awaiting is set
	// during that wait, for Listener.Drain to end it; awaitUntil is the
	// idle deadline the wait ran under (none when it did not run), which
	// the next read keeps; waited says the wait ended with the socket
	// readable, so that read needs no yield first.
	await bool
	// requestDone is set by AwaitNextRequest: the server has a request's
	// answer, so the next Read begins another request even when nothing
	// was written in between (see Read). pipelinedRead says a Read came
	// so, the answer still unwritten in the server's buffer, and no turn
	// began since: an EOF then cuts a request, not the connection.
	requestDone   bool
	pipelinedRead bool
	// readTimedOut is set once a Read returned for its deadline
	// (ReadTimedOut); answeredEarly by writeStep for sysWrite
	// (ErrAnsweredEarly).
	readTimedOut  bool
	answeredEarly bool
	awaiting      atomic.Bool
	awaitUntil    int64
	waited        bool
	// turns counts, on a server connection, the reads that followed a
	// write that could end an answer; interim says the server wrote an
	// answer of its own before a request's (100 Continue), after which
	// turns no longer follows the requests (see Turns).
	turns   uint64
	interim bool
	// head watches each turn's request head for a bare-LF end (server
	// connections). bodyNext says the next turn carries a body, not a
	// head (ExpectBody), until a second write (the answer, when the body
	// came with the head); continued says the first (the 100 Continue)
	// went out. midAnswer says the last write was a full server buffer:
	// more of that answer is still to come.
	head      headWatch
	bodyNext  bool
	continued bool
	midAnswer bool
	// headOnly says the last read brought the whole head of the turn's
	// request and nothing after it (see Write).
	headOnly bool
	// Server connections accepted by a Listener with client timeouts
	// (see Listener.ReadTimeout): the timeouts; the read phase (the
	// connection's first request, the wait for the next one, the rest of
	// a request); whether that phase's read deadline and the turn's write
	// deadline are set. Those are set when a read or a write first has to
	// wait, not before each one (see clientDeadline).
	timeouts  clientTimeouts
	readPhase uint8
	readSet   bool
	writeSet  bool
	// writeMark is how much was written when the write deadline was last
	// set, writeOwn that deadline (none when another, earlier one was in
	// force): a wait after progress moves it (writeWait).
	writeMark uint64
	writeOwn  int64

	// sys is the socket (nil when c is not one): reads and writes go
	// through it with raw system calls (sysRead, sysWrite); rd and wr
	// carry one call's state to the callbacks read1 and write1, bound
	// once. One each, as a read and a write may run at the same time.
	sys    syscall.RawConn
	read1  func(uintptr) bool
	write1 func(uintptr) bool
	rd, wr rawIO
	// sp is a splice's state (ReadToPipe, WriteFromPipe), for the
	// callbacks spliceIn1 and spliceOut1.
	sp                    pipeIO
	spliceIn1, spliceOut1 func(uintptr) bool
	// iov and msg back the sendmsg of two buffers (see writeOnce): one
	// writer at a time uses them.
	iov [2]syscall.Iovec
	msg syscall.Msghdr

	// Client connections (NewClient over a socket): client is set,
	// flushSize is the client's write buffer size (a shorter write ends a
	// request), step1 the step callback bound once and pending* its
	// state, for writeThenWait.
	client    bool
	flushSize int
	// unread is set when the socket may hold data whose readiness the
	// poller has already reported (a read filled its buffer, a long
	// request is being written): writeThenWait would forget it and wait
	// for readiness that is not coming, so the plain write is used.
	unread     atomic.Bool
	step1      func(uintptr) bool
	spliceStep bool
	pending    [2][]byte
	pendingN   int
	pendingErr error
	stepped    bool
	// sending is set from the first write of a request to the next read;
	// on a client connection the first write checks the idle connection
	// first (checkIdle), with peek1 (peek bound once) filling peekN and
	// peekErr. sent counts the bytes written (all but a server's held
	// writes), reqStart is sent at the first write of the current
	// request; ended says a read since then met the end of the stream,
	// and sawEOF that the first such read met the peer's orderly close,
	// not a reset: what RequestUnreceived needs. (A reset socket reads as
	// EOF the second time: a reset must not pass for a close because
	// bufio or fasthttp read again after it; found by review.)
	sending  bool
	sent     uint64
	reqStart uint64
	ended    bool
	sawEOF   bool
	// answered says a read since the current request's first write
	// brought bytes (ResponseBegun).
	answered bool
	// ackBase is what the peer had acknowledged when the client Conn was
	// made (the SYN of a connection this side opened counts as one
	// byte); ackBaseOK says it is known.
	ackBase   uint64
	ackBaseOK bool
	peek1     func(uintptr)
	peekN     uintptr
	peekErr   syscall.Errno
	peekBuf   [1]byte

	// Server connections, for HoldNextWrite: hold is set until the next
	// write, held is that write's copy (in *heldBuf) until the write after
	// it, sent with it in one sendmsg (writeAll). heldBuf comes
	// from the listener's pool (holds) for the time it holds, so an idle
	// connection keeps none.
	hold    bool
	held    []byte
	heldBuf *[]byte
	holds   *sync.Pool
	// lent is what the answer being written is written from, given back
	// once the server has passed that answer on (LendToAnswer).
	lent Lent
	// linger asks Close to drain the peer's data first (LingerOnClose);
	// lingers is the accepting listener's count of such closes to come,
	// received says a read returned data at least once.
	linger   atomic.Bool
	lingers  *lingerGroup
	received bool
	// spoke is received for Listener.Drain's goroutine; hushed says Drain
	// ended the wait of a connection that had sent nothing, whose read
	// then fails as a closed one (see Drain).
	spoke  atomic.Bool
	hushed atomic.Bool
	// ln is the listener that accepted the connection (nil for one it
	// did not): its count of open connections and its draining flag.
	// closed makes Close count the connection out once.
	ln     *Listener
	closed atomic.Bool
}

// rawIO is the state of one raw read or write: the buffer (for a write,
// buf and then more), how much of it was done, and the error that stopped
// it.
type rawIO struct {
	buf  []byte
	more []byte
	n    int
	err  syscall.Errno
}

// clientTimeouts are a Listener's client timeouts, copied into each
// connection it accepts; on says one of them is set.
type clientTimeouts struct {
	read, write, idle time.Duration
	on                bool
}

// Read phases of a server connection with client timeouts.
const (
	phaseFirst   = iota // the first request: ReadTimeout from the first wait
	phaseIdle           // waiting for the next request: IdleTimeout
	phaseRequest        // the rest of a request: ReadTimeout from its first wait
)

// FirstReadSize caps the first read of a server connection's turn, the
// one that brings a request head. The server reads into its buffer, and a
// body that came with the head is then copied out of it into the
// request's own; the part of a body at least as long as the server's
// buffer is read straight into the request instead (bufio.Reader). So a
// read of up to the whole buffer (8 KiB) copied most of a POST body's
// first 8 KiB; capped, it copies at most this much, as nginx reads a head
// into a 1 KiB buffer first. A head longer than this takes one more read.
// Paired A/B (bench/pair.sh), 16 KiB POSTs: 0.975 (0.963-0.997) at 4 KiB,
// 0.971 at 2 KiB; GETs unchanged. 4 KiB keeps request lines that long in
// the first read, which headWatch needs.
const FirstReadSize = 4 << 10

// maxHold bounds the write HoldNextWrite copies; a longer one goes out at
// once. fasthttp's server writes through a 4 KiB buffer by default.
const maxHold = 16 << 10

// none is the offset that means "no deadline".
const none = math.MinInt64

// direction is one direction's deadline state, as offsets from Conn.base.
type direction struct {
	// want is the deadline the caller set last.
	want atomic.Int64
	// armed is the deadline the runtime timer holds; it is never later
	// than want while want is set.
	armed atomic.Int64
	// mu serialises moving the runtime timer (the slow path), so that a
	// deadline set meanwhile from another goroutine is never overwritten
	// by an older one.
	mu sync.Mutex
}

func newConn(c net.Conn, yield bool) *Conn {
	cc := &Conn{Conn: c, base: time.Now(), yield: yield}
	if yield {
		cc.head.start()
	}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cc.sys = raw
			cc.read1, cc.write1 = cc.readStep, cc.writeStep
			cc.step1 = cc.step
			cc.spliceIn1, cc.spliceOut1 = cc.spliceIn, cc.spliceOut
		}
	}
	cc.awaitUntil = none
	cc.read.want.Store(none)
	cc.read.armed.Store(none)
	cc.write.want.Store(none)
	cc.write.armed.Store(none)
	return cc
}

// New wraps c with lazy deadlines (for connections to upstreams).
func New(c net.Conn) *Conn { return newConn(c, false) }

// NewServer wraps c with lazy deadlines and the yield before reading the
// next request (for connections a server accepted).
func NewServer(c net.Conn) *Conn { return newConn(c, true) }

// NewClient wraps an upstream connection whose client writes requests
// through a buffer of flushSize bytes: lazy deadlines, and a write shorter
// than flushSize (the flush that ends a request) returns once the response
// has started to arrive (writeThenWait). Use it only where every request
// written is followed by reading its response, as in an HTTP/1 client, and
// not under TLS (a TLS server sends records unasked, session tickets for
// one); on a connection that is not a socket it is New.
//
// Before the first write of each request the connection checks that
// nothing arrived while it was idle (checkIdle): a backend that closed it
// (its keep-alive timeout) makes that write fail with ErrIdleClosed, and
// bytes nobody asked for (a body after a HEAD or 204 response, a second
// response) with ErrUnsolicited, before any byte of the request is sent.
// Either way the connection must not be used again; the request can go
// out on another one.
func NewClient(c net.Conn, flushSize int) *Conn {
	cc := newConn(c, false)
	if cc.sys != nil {
		cc.client, cc.flushSize = true, flushSize
		cc.peek1 = cc.peek
		// The SYN counts: a kernel that reports nothing acknowledged on
		// an open connection does not keep the count (gVisor fills
		// tcp_info with zeros), and RequestUnreceived stays false.
		_, base, ok := cc.tcpInfo()
		cc.ackBase, cc.ackBaseOK = base, ok && base > 0
	}
	return cc
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline records t for reads; it moves the runtime timer only when
// t is earlier than the armed deadline, or no deadline is armed.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.set(&c.read, t, true) }

// SetWriteDeadline records t for writes, like SetReadDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.set(&c.write, t, false) }

// offset is t as an offset from base (saturating, never none).
func (c *Conn) offset(t time.Time) int64 {
	if n := int64(t.Sub(c.base)); n != none {
		return n
	}
	return none + 1
}

func (c *Conn) set(d *direction, t time.Time, read bool) error {
	if t.IsZero() {
		d.want.Store(none)
		if d.armed.Load() == none {
			return nil
		}
		return c.sync(d, read)
	}
	return c.setOffset(d, c.offset(t), read)
}

// setOffset is set for a deadline given as an offset from base.
func (c *Conn) setOffset(d *direction, n int64, read bool) error {
	// want is stored before armed is read, and sync stores armed before
	// it reads want back: either this call sees a timer armed later than
	// the deadline and moves it, or sync sees the deadline and arms it.
	d.want.Store(n)
	if a := d.armed.Load(); a != none && a <= n {
		// The armed timer fires at or before t; if before, the operation
		// it interrupts re-arms it (rearm).
		return nil
	}
	return c.sync(d, read)
}

// sync arms the runtime timer at the wanted deadline, again if want moved
// while it did.
func (c *Conn) sync(d *direction, read bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		w := d.want.Load()
		var t time.Time
		if w != none {
			t = c.base.Add(time.Duration(w))
		}
		d.armed.Store(w)
		var err error
		if read {
			err = c.Conn.SetReadDeadline(t)
		} else {
			err = c.Conn.SetWriteDeadline(t)
		}
		if err != nil || d.want.Load() == w {
			return err
		}
	}
}

// rearm is called when an operation failed with a deadline error. It
// reports whether the caller's deadline is still ahead, in which case the
// timer was early and now holds that deadline: the operation is to be
// retried.
func (c *Conn) rearm(d *direction, read bool) bool {
	if w := d.want.Load(); w != none && int64(time.Since(c.base)) >= w {
		return false
	}
	return c.sync(d, read) == nil
}

// Read reads from the connection, retrying when a timer armed for an
// earlier deadline fired before the current one.
func (c *Conn) Read(p []byte) (int, error) {
	if c.hold {
		// Written only when set (server connections, whose reads and
		// writes alternate): a Read beside a Write on another goroutine
		// stays race-free.
		c.hold = false
	}
	flushed := c.held != nil
	if flushed {
		// HoldNextWrite's promise of a second write was not kept; what
		// is held goes out before the peer is asked for anything.
		if _, err := c.writeHeld(nil, false); err != nil {
			return 0, err
		}
	}
	if c.requestDone {
		c.requestDone = false
		c.pipelinedRead = c.pipelinedRead || !c.wrote.Load()
		if c.timeouts.on && !c.wrote.Load() {
			// The next request came pipelined behind the last, with
			// whose body it arrived: the server holds the last answer
			// unwritten while it reads this one, so no turn begins
			// below, and this request's body was read under the last
			// one's client_read deadline (found by review: cut with a
			// 408 after a second of its own). Its reads get their own.
			c.readPhase = phaseRequest
			c.readSet = false
			c.read.want.Store(none)
		}
	}
	if c.yield && c.wrote.Load() {
		c.wrote.Store(false)
		if !c.midAnswer && !flushed {
			// Not a read that resumes in the middle of an answer (the last
			// write filled the server's buffer, or this read flushed a
			// held one): the server reads a pipelined request's body
			// there while the answer's tail still waits in its buffer.
			c.turns++
			c.pipelinedRead = false
		}
		c.giveBack()
		// A turn that starts in the middle of an answer (the last write
		// filled the server's buffer, or this read flushed a held one)
		// comes in the middle of a request too: the server reads on while
		// the rest of the answer waits in its buffer, requests having come
		// pipelined; the read may be a body.
		if c.bodyNext || c.midAnswer || flushed {
			c.head.state = headOff
		} else {
			c.head.start()
		}
		if c.timeouts.on {
			c.startTurn(c.bodyNext)
		}
		c.bodyNext, c.continued = false, false
		c.await, c.headOnly = false, false
		if u := c.awaitUntil; u != none {
			// The wait for this request (awaitingWrite) ran under the
			// idle deadline, which holds for the read that follows, as
			// a later one the server may have set would not.
			c.awaitUntil = none
			if w := c.read.want.Load(); w == none || u < w {
				if err := c.set(&c.read, c.base.Add(time.Duration(u)), true); err != nil {
					return 0, c.opError("read", err)
				}
			}
			c.readSet = true
		}
		if c.waited {
			// The request is readable already: no yield.
			c.waited = false
		} else {
			runtime.Gosched()
		}
	}
	if c.head.state == headBare {
		// Asked for more of a head that ended in a bare LF (headWatch).
		c.head.state = headOff
		return 0, ErrBareLFHead
	}
	c.sending = false
	if c.head.state == headStart && len(p) > FirstReadSize {
		// A turn's first read takes the head and little more (see
		// FirstReadSize).
		p = p[:FirstReadSize]
	}
	for {
		n, err := c.sysRead(p)
		if n == 0 && !c.ended && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
			c.ended, c.sawEOF = true, err == io.EOF
		}
		if n == 0 && err == io.EOF && c.pipelinedRead {
			// A pipelined request cut where a chunk size would begin:
			// fasthttp's chunk reader returns this EOF as it is, which
			// its server takes for a clean close and drops the answers
			// it holds (found by review: the request before it was
			// served, its answer lost). As an unexpected EOF, the server
			// answers 400 and flushes what it holds first.
			err = io.ErrUnexpectedEOF
		}
		if n > 0 && !c.received {
			c.received = true
			c.spoke.Store(true)
		}
		c.answered = c.answered || n > 0
		if c.client || c.yield {
			// A read that did not fill p emptied the socket; any other
			// may have left data the poller already reported.
			c.unread.Store(!(n > 0 && n < len(p)))
		}
		if n == 0 && err != nil && !c.received && c.hushed.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
			if !c.waiting() {
				// A graceful stop ended the wait for a first request
				// that never began: closed, for the server to let it go
				// quietly.
				return 0, c.opError("read", net.ErrClosed)
			}
			// Its first bytes came before the stop ended the wait (the
			// read had not run since): read on (found by review).
			c.hushed.Store(false)
		}
		// A deadline error comes before anything is read: retrying
		// loses nothing.
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !c.rearm(&c.read, true) {
			if n == 0 && err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				c.readTimedOut = true
			}
			if n > 0 && c.readPhase == phaseIdle {
				// The next request has come: the rest of it is read
				// under ReadTimeout from here (the first request's runs
				// on), which replaces the idle wait's deadline, as
				// fasthttp's ReadTimeout does at the first byte. Kept,
				// that deadline would bound the request whenever it came
				// sooner than ReadTimeout from the request's first wait.
				c.readPhase, c.readSet = phaseRequest, false
				c.read.want.Store(none)
			}
			if n > 0 {
				first := c.head.state == headStart
				if c.head.state != headOff {
					n = c.head.scan(p[:n])
				}
				// This read brought the turn's request head whole and
				// nothing after it, no body, no pipelined request: its
				// first CRLFCRLF, which ended it well, is its end. The
				// watch must have seen the head begin and end: a read that
				// began with a body's tail and ended with the next head was
				// taken for one, and a long answer then waited for a
				// request already read (found by review: served at
				// timeouts.idle, then 408).
				c.headOnly = first && c.head.ended && n >= 4 &&
					bytes.Index(p[:n], crlfCRLF) == n-4
			}
			return n, err
		}
	}
}

// Write writes p whole unless an error other than an early timer stops it.
func (c *Conn) Write(p []byte) (int, error) {
	if c.yield {
		c.noteServerWrite(p)
	}
	switch {
	case c.held != nil:
		// A hold asked for while a write is held (the next pipelined
		// response's) ends here: the held write is followed by this one,
		// but what comes after this one is not known to be followed.
		// This one ends the answer (see HoldNextWrite), and may wait for
		// the next request, when shorter than the server's buffer: the
		// server's last flush, made when no pipelined request waits in
		// its reader. A full buffer is the middle of the next pipelined
		// answer. A longer write, straight from the body, comes before
		// the server looks in its reader, where netconn cannot see: it
		// waits only when the turn read the request's head and nothing
		// more (headOnly).
		c.hold = false
		n := len(p)
		return c.writeHeld(p, c.await && (n < ServerWriteBufferSize || n > ServerWriteBufferSize && c.headOnly))
	case c.hold:
		c.hold = false
		if len(p) > 0 && len(p) <= maxHold {
			c.holdCopy(p)
			return len(p), nil
		}
	}
	if err := c.beginRequest(); err != nil {
		return 0, err
	}
	if c.client && len(p) > 0 && len(p) < c.flushSize && !c.unread.Load() {
		return c.writeThenWait(p, nil)
	}
	if c.await && len(p) > 0 && len(p) < ServerWriteBufferSize {
		// Shorter than the server's buffer: the end of the answer.
		return c.awaitingWrite(p, nil)
	}
	if c.client {
		// Part of a longer request: the peer may answer before the end
		// of it arrives (a 401 or 413 after the headers), and that
		// readiness must not be forgotten by writeThenWait.
		c.unread.Store(true)
	}
	return c.writeAll(p, nil)
}

// WriteRequest writes head and then body, as Write would write them
// joined, without joining them: one sendmsg where the socket takes both,
// so a request body goes out from where it lies instead of being copied
// into a write buffer first. On a NewClient connection the two must be
// the whole request (its response is waited for as Write waits after the
// end of a request, and the idle check comes first); on any other Conn
// they are just written.
func (c *Conn) WriteRequest(head, body []byte) (int, error) {
	switch {
	case len(body) == 0:
		return c.Write(head)
	case len(head) == 0:
		return c.Write(body)
	case c.hold || c.held != nil:
		// A server connection's held write goes first (see Write).
		n, err := c.Write(head)
		if err != nil {
			return n, err
		}
		m, err := c.Write(body)
		return n + m, err
	}
	if err := c.beginRequest(); err != nil {
		return 0, err
	}
	if !c.client {
		return c.writeAll(head, body)
	}
	// The request goes whole in this call, so the response cannot have
	// started before it (see writeThenWait) unless something was already
	// unread; a part the socket does not take is written the usual way.
	if !c.unread.Load() {
		return c.writeThenWait(head, body)
	}
	return c.writeAll(head, body)
}

// beginRequest, on a client connection (whose reads and writes take
// turns), notes where a request starts (the first write after a read)
// and checks the idle connection first.
func (c *Conn) beginRequest() error {
	if !c.client || c.sending {
		return nil
	}
	c.sending, c.reqStart, c.answered = true, c.sent, false
	c.ended, c.sawEOF = false, false
	if err := c.checkIdle(); err != nil {
		return c.opError("write", err)
	}
	return nil
}

// writeAll writes p and then more (which may be empty) whole, unless an
// error other than an early timer stops it.
func (c *Conn) writeAll(p, more []byte) (int, error) {
	written := 0
	for {
		n, err := c.sysWrite(after(p, more, written))
		written += n
		if c.yield && n > 0 {
			c.wrote.Store(true)
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !c.rearm(&c.write, false) {
			return written, err
		}
	}
}

// after is what is left of p and then more once n bytes of the two are
// written, the first of them not empty unless both are.
func after(p, more []byte, n int) ([]byte, []byte) {
	if n < len(p) {
		return p[n:], more
	}
	return more[n-len(p):], nil
}

// sysRead reads like net.Conn.Read, errors included, but with a raw
// system call: a read on a non-blocking socket never blocks, so the
// scheduler's bookkeeping around a system call (entersyscall and
// exitsyscall, about 2% of sluice's CPU for its four per request) buys
// nothing. The poller's wait and the descriptor's lock (RawConn) stay.
func (c *Conn) sysRead(p []byte) (int, error) {
	if c.sys == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.rd = rawIO{buf: p}
	n, err := c.rawDone("read", &c.rd, c.sys.Read(c.read1))
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// readStep is RawConn.Read's callback for sysRead: false asks to wait.
func (c *Conn) readStep(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rd.buf[0])), uintptr(len(c.rd.buf)), 0, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.timeouts.on && !c.readSet {
				c.readSet = true
				c.clientDeadline(&c.read, true, c.readTimeout())
			}
			return false
		}
		c.rd.n, c.rd.err = int(n), e
		return true
	}
}

// sysWrite writes p and then more whole, or up to an error, like
// net.Conn.Write of the two joined, with raw system calls (see sysRead);
// p is empty only if more is (see after).
func (c *Conn) sysWrite(p, more []byte) (int, error) {
	if c.sys == nil || len(p) == 0 {
		n, err := c.Conn.Write(p)
		c.sent += uint64(n)
		if err != nil || len(more) == 0 {
			return n, err
		}
		m, err := c.Conn.Write(more)
		c.sent += uint64(m)
		return n + m, err
	}
	c.wr = rawIO{buf: p, more: more}
	n, err := c.rawDone("write", &c.wr, c.sys.Write(c.write1))
	c.sent += uint64(n)
	if c.answeredEarly {
		c.answeredEarly = false
		return n, c.opError("write", ErrAnsweredEarly)
	}
	return n, err
}

// rawDone reports a finished raw read or write as net.Conn would: how
// much was done (a failed read reports none), and RawConn's error or the
// system call's, wrapped.
func (c *Conn) rawDone(op string, r *rawIO, err error) (int, error) {
	n, e := max(r.n, 0), r.err
	r.buf, r.more = nil, nil
	switch {
	case err != nil:
		return n, c.opError(op, err)
	case e != 0:
		return n, c.opError(op, os.NewSyscallError(op, e))
	}
	return n, nil
}

// writeStep is RawConn.Write's callback for sysWrite: false asks to wait
// for room.
func (c *Conn) writeStep(fd uintptr) bool {
	w := &c.wr
	for w.n < len(w.buf)+len(w.more) {
		rest, more := after(w.buf, w.more, w.n)
		n, e := c.writeOnce(fd, rest, more)
		switch e {
		case 0:
			w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			if c.timeouts.on {
				c.writeWait()
			}
			if c.client {
				if c.answered1(fd) {
					c.answeredEarly, w.err = true, syscall.ECANCELED
					return true
				}
				c.watchForAnswer()
			}
			return false
		default:
			w.err = e
			return true
		}
	}
	return true
}

// answered1 looks, without consuming anything, whether the peer has
// refused the rest of the request: closed, reset, or sent a final answer
// of 300 or more (RFC 9112 §9.5: a response that says the server does not
// want the body). Interim answers (a 100 Continue sent unasked, 103) are
// skipped whole; a 2xx is no refusal (a server may answer at once and
// still read the upload: found by review), nor is anything too short to
// tell yet: the next look decides.
func (c *Conn) answered1(fd uintptr) bool {
	var small [512]byte
	buf := small[:]
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false
		case e != 0 || n == 0:
			return true // a reset, or the peer's close
		}
		refuses, decided := refusal(buf[:n])
		if decided || int(n) < len(buf) || len(buf) == maxAnswerPeek {
			return refuses
		}
		// An interim head longer than the first look (a 103 with many
		// Link lines): look again, as far as a response head may go
		// (found by review: the 413 behind it was never seen).
		buf = make([]byte, maxAnswerPeek)
	}
}

// maxAnswerPeek bounds how far answered1 looks: the longest response head
// sluice reads (proxy's upstream read buffer).
const maxAnswerPeek = 16 << 10

// refusal reports whether b, the start of what a peer sent while a
// request was being written, holds a final status line of 300 or more
// after any interim answers, or is no HTTP answer at all; and whether b
// decides it: not when b ends before the status line of the answer after
// the interim ones.
func refusal(b []byte) (refuses, decided bool) {
	for {
		const line = len("HTTP/1.1 100")
		if len(b) < line {
			if len(b) > 0 && !bytes.HasPrefix([]byte("HTTP/1."), b[:min(len(b), 7)]) {
				return true, true
			}
			return false, false
		}
		if !bytes.HasPrefix(b, []byte("HTTP/1.")) || b[8] != ' ' || b[9] < '1' || b[9] > '9' {
			return true, true // garbage: let the read say so
		}
		if b[9] != '1' {
			return b[9] >= '3', true
		}
		end := headLen(b)
		if end < 0 {
			return false, false // an interim head not whole yet
		}
		b = b[end:]
	}
}

// headLen is the length of the head at the start of b through its empty
// line, which a CRLF or a bare LF may end, as the proxy's reader takes
// it (found by review: a 100 in bare LFs hid the 413 behind it); -1 when
// b does not hold it whole. The first line is a status line, never empty.
func headLen(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		line := b[i : i+j]
		i += j + 1
		if i > j+1 && (len(line) == 0 || len(line) == 1 && line[0] == '\r') {
			return i
		}
	}
}

// answerWatch is how often a client connection's write, waiting for room
// for the rest of a request, looks whether the peer has answered.
const answerWatch = 100 * time.Millisecond

// ErrAnsweredEarly fails the write of a request on a client connection
// whose peer answered, closed or reset before it took the whole request:
// a server may answer an upload it refuses (413, 401) and stop reading
// (RFC 9112 §9.5). What it sent is there to be read. A peer that stops
// reading without closing would otherwise leave the write waiting for
// room until its deadline (found by review: a 413 became a 504).
var ErrAnsweredEarly = errors.New("netconn: peer answered before the request was written whole")

// watchForAnswer arms the write timer answerWatch ahead, unless the
// write's deadline comes first: the wait for room then ends early, the
// write is retried (rearm), and its next EAGAIN looks for an answer
// again (writeStep).
func (c *Conn) watchForAnswer() {
	d := &c.write
	at := int64(time.Since(c.base) + answerWatch)
	if w := d.want.Load(); w != none && w <= at {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed.Store(at)
	_ = c.Conn.SetWriteDeadline(c.base.Add(time.Duration(at)))
	if w := d.want.Load(); w != none && w < at {
		// Set meanwhile from another goroutine, which saw the timer
		// armed earlier than it, and earlier than this watch: its
		// deadline must not wait for the watch (found by review).
		d.armed.Store(w)
		_ = c.Conn.SetWriteDeadline(c.base.Add(time.Duration(w)))
	}
}

// startTurn begins a server connection's turn (its next request, or the
// body of the one whose 100 Continue went out): the deadlines of the last
// turn are dropped, and the new ones are set when a read or write first
// waits. A timer armed for an old deadline stays; if it fires first, the
// operation it stops finds no deadline passed and goes on (rearm). A body
// after 100 Continue keeps its head's read deadline: client_read bounds
// the whole request (found by review: the body got a client_read of its
// own, so a trickled request had twice as long).
func (c *Conn) startTurn(body bool) {
	c.writeSet = false
	c.write.want.Store(none)
	if body {
		c.readPhase = phaseRequest
		return
	}
	c.readPhase = phaseIdle
	c.readSet = false
	c.read.want.Store(none)
}

// readTimeout is the client timeout of the read phase.
func (c *Conn) readTimeout() time.Duration {
	if c.readPhase == phaseIdle && c.timeouts.idle > 0 {
		return c.timeouts.idle
	}
	return c.timeouts.read
}

// writeWait sets a server connection's client write timeout for a write
// about to wait for room: at the turn's first such wait, and again at
// each later one that follows progress, so that timeouts.client_write
// bounds a client that takes nothing for that long, as nginx's
// send_timeout does, not the whole of a long answer to a slow but steady
// reader (found by review: a 32 MiB download was cut at client_write). A
// deadline set otherwise (a 103's, LingerOnClose's) is left alone.
func (c *Conn) writeWait() {
	written := c.sent + uint64(c.wr.n) // (sent counts the writes done)
	switch {
	case !c.writeSet:
		c.writeSet, c.writeMark, c.writeOwn = true, written, none
		if c.clientDeadline(&c.write, false, c.timeouts.write) {
			c.writeOwn = c.write.want.Load()
		}
	case written > c.writeMark && c.writeOwn != none && c.write.want.Load() == c.writeOwn:
		c.writeMark = written
		c.writeOwn = int64(time.Since(c.base) + c.timeouts.write)
		_ = c.setOffset(&c.write, c.writeOwn, false)
	}
}

// clientDeadline sets a server connection's client timeout for the
// operation about to wait (from inside its RawConn callback, which keeps
// the descriptor): timeout from now, unless a deadline set during this
// turn comes sooner (LingerOnClose's, a 103's). A read or write that
// does not wait needs none and reads no clock: fasthttp's server, which
// would set three deadlines per request, each after reading the clock,
// is given no timeouts (proxy.NewFrontServer).
func (c *Conn) clientDeadline(d *direction, read bool, timeout time.Duration) (set bool) {
	if timeout <= 0 {
		return false
	}
	n := int64(time.Since(c.base) + timeout)
	if w := d.want.Load(); w != none && w <= n {
		return false
	}
	_ = c.setOffset(d, n, read) // a failure (closed) meets the wait
	return true
}

// writeOnce makes one raw write of p (not empty) and then more: a sendto,
// or a sendmsg of the two when more is not empty.
func (c *Conn) writeOnce(fd uintptr, p, more []byte) (int, syscall.Errno) {
	if len(more) == 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
			syscall.MSG_NOSIGNAL, 0, 0)
		return int(n), e
	}
	c.iov[0].Base, c.iov[1].Base = &p[0], &more[0]
	c.iov[0].SetLen(len(p))
	c.iov[1].SetLen(len(more))
	c.msg.Iov = &c.iov[0]
	c.msg.Iovlen = 2
	n, _, e := syscall.RawSyscall(syscall.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&c.msg)), syscall.MSG_NOSIGNAL)
	c.iov[0].Base, c.iov[1].Base, c.msg.Iov = nil, nil, nil
	return int(n), e
}

// opError wraps err as net.Conn's methods do (RawConn's own wrapping,
// op "raw-read" or "raw-write", is replaced).
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Turns is the number of times this server connection's reads resumed
// after a write that could end an answer (not a full server buffer, not a
// held write), plus one. While the peer sends a request, waits for its
// answer and only then sends the next, it is the number of the request
// being served (fasthttp's ConnRequestNum); a request that came pipelined
// behind another, before that one's answer went out, leaves it behind, for
// good (so does a read for its body that resumes in the middle of that
// answer). Once the server has written an interim answer of its own (100
// Continue, see ExpectBody), which would put it ahead and let a later
// pipelined request bring it level again, it is 0 for good. Call it from
// the goroutine that reads.
func (c *Conn) Turns() uint64 {
	if c.interim {
		return 0
	}
	return c.turns + 1
}

// noteServerWrite keeps what the head watch needs to know of a server
// Conn's writes (see headWatch).
func (c *Conn) noteServerWrite(p []byte) {
	// A full buffer may be an answer's end as well as its middle; the
	// server reads in the middle of one only when a pipelined request
	// waits in its reader, and none can when the turn's read brought the
	// request's head and nothing after it (found by review: an answer of
	// exactly 4096 bytes was taken for the middle of one, the next turn
	// went unwatched and uncounted).
	c.midAnswer = len(p) == ServerWriteBufferSize && !c.headOnly
	if c.bodyNext {
		if c.continued {
			c.bodyNext = false // the answer: the body came with the head
		}
		c.continued = true
	}
}

var crlfCRLF = []byte("\r\n\r\n")

// ServerWriteBufferSize is the write buffer of the server that writes
// through a server Conn (fasthttp's default, and sluice's front server's):
// a write of exactly this size is that buffer filling up in the middle of
// an answer, whose end the server still holds.
const ServerWriteBufferSize = 4096

// ExpectBody tells a server Conn that the server is about to answer 100
// Continue: the reads after that answer carry the request's body, which
// the head watch must not take for a head. Call it from the goroutine that
// reads (fasthttp's Server.ExpectHandler runs there).
func (c *Conn) ExpectBody() {
	c.bodyNext, c.continued, c.await = true, false, false
	c.interim = true
}

// HoldNextWrite tells a server Conn that the response about to be
// written is longer than the buffer it is written through, so that it
// takes at least two writes, the first a full buffer: that write is held
// (copied) and goes out together with the next in one sendmsg, as fasthttp
// itself sends a long response on a bare *net.TCPConn (a wrapped
// connection loses that: one more write and one more loopback segment per
// response). Call it from the goroutine that writes, only when a second
// write is certain; a Read flushes whatever is still held, so a broken
// promise delays bytes, never loses them, unless the connection is closed
// before the next read.
func (c *Conn) HoldNextWrite() { c.hold = true }

// Lent is memory lent to a server Conn's answer (LendToAnswer): a pooled
// buffer its body is written from, say.
type Lent interface {
	// GiveBack returns the memory to its owner; the answer no longer
	// reads it.
	GiveBack()
}

// LendToAnswer hands c memory that the answer about to be written reads
// from (its body), for c to give back as soon as the server has passed
// that answer on, so that a pool of such buffers serves the connections'
// answers in turn instead of each connection keeping its own between
// requests (nginx's buffers come from the request's pool the same way):
// the next turn's first read, the write that ends an answer that waits for
// the next request (AwaitNextRequest: once written, before the wait), or
// the next LendToAnswer (a pipelined request's answer is decided after the
// server has passed the last one to its write buffer) give it back. A
// server passes an answer on whole within its write: what its buffer did
// not take went to the socket. Call it from the goroutine that writes,
// after the answer is decided and before the server writes it. A Conn
// closed before that keeps l for the garbage collector: a Close from
// another goroutine may come in the middle of a write from it.
func (c *Conn) LendToAnswer(l Lent) {
	c.giveBack()
	c.lent = l
}

// giveBack gives back what LendToAnswer lent, if anything.
func (c *Conn) giveBack() {
	if c.lent != nil {
		c.lent.GiveBack()
		c.lent = nil
	}
}

// holdCopy copies p into a held buffer.
func (c *Conn) holdCopy(p []byte) {
	if c.heldBuf == nil && c.holds != nil {
		if b, ok := c.holds.Get().(*[]byte); ok {
			c.heldBuf = b
		}
	}
	if c.heldBuf == nil {
		c.heldBuf = new([]byte)
	}
	*c.heldBuf = append((*c.heldBuf)[:0], p...)
	c.held = *c.heldBuf
}

// writeHeld sends the held write and p in one sendmsg and reports how
// much of p went; ends says the two end an answer that keeps the
// connection open (awaitingWrite).
func (c *Conn) writeHeld(p []byte, ends bool) (int, error) {
	h := c.held
	c.held = nil
	defer c.releaseHeld()
	var n int
	var err error
	if ends {
		n, err = c.awaitingWrite(h, p)
	} else {
		n, err = c.writeAll(h, p)
	}
	return max(n-len(h), 0), err
}

// releaseHeld gives the held buffer back to the listener's pool.
func (c *Conn) releaseHeld() {
	if c.holds != nil && c.heldBuf != nil {
		c.holds.Put(c.heldBuf)
		c.heldBuf = nil
	}
}

// writeThenWait writes the end of a request and returns once the socket
// is readable (or the wait ends otherwise), so that the read of the
// response that follows finds it instead of coming back empty. The write
// is made inside RawConn.Read, after the poller forgot any earlier
// readiness. That is safe only when nothing was readable before: Write
// calls this only when the last read emptied the socket and the request
// is written in this one call, so the response cannot have started yet.
// What remains is a peer that sends bytes on an idle connection unasked:
// a close after them (a 408 before closing, say) wakes the wait, as the
// request then meets a reset; bytes and no close (no valid HTTP/1.1 peer
// does that) leave the wait to the exchange deadline.
func (c *Conn) writeThenWait(p, more []byte) (int, error) {
	// The wait runs under the read deadline, which fasthttp sets only
	// after the write: bound it by the write deadline, the same one for
	// the whole exchange.
	n, _, _, err := c.writeWaiting(p, more, c.write.want.Load())
	return n, err
}

// writeWaiting writes p and then more inside RawConn.Read and waits there
// for the socket to become readable, under a read deadline of until (an
// offset from base; none for no deadline). readable says the wait ended
// that way, not by the deadline, a close or a write the socket did not
// take whole (those are written the usual way).
func (c *Conn) writeWaiting(p, more []byte, until int64) (n int, readable, waited bool, err error) {
	p, more = after(p, more, 0) // p empty only if more is (writeOnce)
	if until != none {
		if err := c.set(&c.read, c.base.Add(time.Duration(until)), true); err != nil {
			n, err := c.writeAll(p, more)
			return n, false, false, err
		}
	}
	c.pending, c.pendingN, c.pendingErr, c.stepped = [2][]byte{p, more}, 0, nil, false
	waitErr := c.sys.Read(c.step1) // a failed wait (deadline, close) leaves the read to report it
	n, err, stepped := c.pendingN, c.pendingErr, c.stepped
	c.pending, c.pendingErr = [2][]byte{}, nil
	c.sent += uint64(n)
	switch {
	case !stepped:
		// RawConn.Read failed before writing (closed, or the read
		// deadline had passed): write the usual way.
		n, err := c.writeAll(p, more)
		return n, false, false, err
	case err != nil:
		return n, false, false, err
	case n < len(p)+len(more):
		// The socket took part of it: the rest the usual way, which
		// waits for room under the write deadline.
		m, err := c.writeAll(after(p, more, n))
		return n + m, false, false, err
	case c.spliceStep && (c.sp.left > 0 || c.sp.err != 0):
		// The pipe's bytes did not all go (WriteFromPipe goes on).
		return n, false, false, nil
	}
	return n, waitErr == nil, true, nil
}

// HeadRequest reports whether the request of the turn under way began
// with a HEAD request line, as the head watch saw it (a request line that
// came in more than one read, or pipelined behind another in the same
// turn, is not seen): the server's own refusal of a request it could not
// parse must then have no body (RFC 9110 §9.3.2; found by review: the
// client took the error text for the next answer).
func (c *Conn) HeadRequest() bool { return c.head.headMethod }

// AwaitNextRequest tells a server Conn whether the answer the server is
// about to write keeps the connection open (an HTTP/1.1 keep-alive answer
// with no "Connection: close"). If it does, the write that ends it waits,
// inside the write, for the client's next request, as the upstream side
// waits for a response (writeThenWait), instead of the yield and the read
// that so often finds nothing (see the package doc). Call it from the
// goroutine that writes, after the answer is decided and before the
// server writes it; an answer that closes the connection must say false,
// or its close waits for the client (a client closes on "Connection:
// close", else the idle timeout ends the wait). Only connections accepted
// by a Listener with an IdleTimeout wait.
func (c *Conn) AwaitNextRequest(keep bool) {
	// The request is answered: a HEAD seen at the turn's start is not
	// the next one's (pipelined behind it, unwatched; found by review).
	c.requestDone, c.head.headMethod = true, false
	c.await = keep && c.canAwait()
	if c.timeouts.write > 0 || keep && c.timeouts.on {
		// The answer's write gets its own client timeout, not what a
		// 103 before it was given (as fasthttp's WriteTimeout would),
		// whether or not it keeps the connection: an answer that comes
		// after the 103's deadline has passed would otherwise fail at
		// its first write.
		c.writeSet = false
		c.write.want.Store(none)
	}
}

// SkipYield tells a server Conn that the read that begins the next turn
// goes to the socket at once, without the yield first (see the package
// doc): after a long answer the client is seldom quick enough for the
// yield to find its next request there. Call it from the goroutine that
// writes, before the server writes the answer.
func (c *Conn) SkipYield() {
	c.waited = c.yield
}

// canAwait says the connection can wait for the next request inside the
// write that ends an answer (AwaitNextRequest).
func (c *Conn) canAwait() bool {
	return c.yield && c.step1 != nil && c.ln != nil && c.ln.IdleTimeout > 0
}

// awaitingWrite writes the end of an answer that keeps the connection
// open (AwaitNextRequest) and returns once the client's next request is
// readable, the listener's IdleTimeout has passed since the write, the
// connection is closed or the listener drains (Listener.Drain ends the
// waits). The idle deadline holds for the read that follows, whatever
// deadline the server sets meanwhile: the wait was its idle time. As on
// the upstream side the write is made after the poller forgot earlier
// readiness, which is safe only when the last read emptied the socket
// (unread is clear): otherwise the write is made the usual way. What the
// client sent since that read (a pipelined request, a half-close) is
// found by one look at the socket after the write (step).
func (c *Conn) awaitingWrite(p, more []byte) (int, error) {
	c.await = false
	if c.unread.Load() {
		return c.writeAll(p, more)
	}
	// awaiting before draining is read, and Drain stores draining before
	// it reads awaiting: a wait Drain does not see is one that sees it is
	// draining.
	c.awaiting.Store(true)
	defer c.awaiting.Store(false)
	if c.Draining() {
		return c.writeAll(p, more)
	}
	until := int64(time.Since(c.base) + c.ln.IdleTimeout)
	n, readable, waited, err := c.writeWaiting(p, more, until)
	if n > 0 {
		c.wrote.Store(true)
	}
	if !waited && err == nil {
		// The answer went out the usual way (the socket did not take it
		// whole: a slow reader), with no wait: the idle time starts now
		// that it is written, not when its write began (found by review:
		// a client that read 100 KB for longer than timeouts.idle found
		// the connection closed when it sent its next request).
		until = int64(time.Since(c.base) + c.ln.IdleTimeout)
		_ = c.set(&c.read, c.base.Add(time.Duration(until)), true)
	}
	c.awaitUntil, c.waited = until, readable
	return n, err
}

// interruptAwait ends a wait in awaitingWrite, or a read's (Drain): the read timer fires now,
// while the read deadline wanted stays (a timer that fires early, which
// Read re-arms, see the package doc).
func (c *Conn) interruptAwait() {
	d := &c.read
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.armed.Store(c.offset(now))
	_ = c.Conn.SetReadDeadline(now)
}

// step is RawConn.Read's callback for writeWaiting: on the first call it
// writes and asks to wait for readability; on the second, readable, it is
// done. A write the socket does not take whole ends the wait at once.
//
// RawConn.Read has the poller forget readiness it reported before: on a
// server connection the client may have sent its next request (pipelined
// behind the answer) or half-closed its side before this write, and the
// wait would not see it until the idle timeout. One look at the socket
// after the write (recv with MSG_PEEK) ends the wait at once then.
func (c *Conn) step(fd uintptr) bool {
	if c.stepped {
		return true
	}
	c.stepped = true
	if !c.stepWrite(fd) {
		return true
	}
	if c.yield {
		// A held write went out whole: its buffer goes back to the
		// pool now, not after the wait (an idle connection keeps none),
		// and so does what the answer was lent (LendToAnswer).
		c.releaseHeld()
		c.giveBack()
		if c.Draining() {
			// Drain may have ended this wait before its deadline was
			// armed, and the arming undone that (awaitingWrite): a
			// draining listener's connections do not wait.
			return true
		}
		c.peek(fd)
		return c.peekErr != syscall.EAGAIN // data, EOF or an error
	}
	return false
}

// stepWrite makes step's write: the pending buffers, then the pipe's
// bytes when WriteFromPipe asked (spliceStep). It reports whether all
// went; what did not is written the usual way after the wait's end.
func (c *Conn) stepWrite(fd uintptr) bool {
	for len(c.pending[0])+len(c.pending[1]) > 0 {
		n, e := c.writeOnce(fd, c.pending[0], c.pending[1])
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.pendingErr = c.opError("write", os.NewSyscallError("write", e))
			return false
		}
		c.pendingN = n
		if n < len(c.pending[0])+len(c.pending[1]) {
			return false
		}
		break
	}
	if c.spliceStep {
		// spliceOut stops at a full socket (EAGAIN) or an error, both
		// left to WriteFromPipe.
		if c.spliceOut(fd); c.sp.left > 0 || c.sp.err != 0 {
			return false
		}
	}
	return true
}

// Lingering close (LingerOnClose): Close waits at most lingerTime in all,
// and lingerQuiet for each read, for the peer to stop sending and close,
// as nginx's lingering_time and lingering_timeout (30 s and 5 s there: a
// proxy that lingers holds a descriptor and a goroutine meanwhile, and a
// client that reads its answer closes within a round trip).
const (
	lingerTime  = 5 * time.Second
	lingerQuiet = time.Second
)

// LingerOnClose makes the next Close end the sending side first (a FIN
// after the answer already written) and read and discard whatever the
// peer still sends, until it closes, is quiet for lingerQuiet, or
// lingerTime has passed; only then is the connection closed. Call it
// before closing a server connection whose request was not read to the
// end, from the goroutine that reads and writes it, which should also be
// the one to close it. Without it the close sends a reset, which a client
// still sending meets before it reads the answer.
//
// A connection that never received a byte (a client that connected and
// sent nothing) has nothing to drain and closes at once. Either way the
// write deadline is moved lingerTime ahead: the answer's write would
// otherwise run under whatever deadline the last response left, long
// past on a connection that sat idle.
func (c *Conn) LingerOnClose() {
	c.await = false // the answer closes the connection
	_ = c.SetWriteDeadline(time.Now().Add(lingerTime))
	if !c.received || c.linger.Swap(true) {
		return
	}
	if c.lingers != nil {
		c.lingers.add()
	}
}

// DrainOnClose asks Close to drain the connection as LingerOnClose does,
// without bounding the answer's write, when the peer has sent bytes not
// yet read: for an answer that closes the connection (Connection: close,
// an HTTP/1.0 request), a plain close with such bytes unread is a reset,
// which throws away the part of the answer still in the socket (found by
// review: a POST followed by a stray CRLF got 16 KiB of a 64 KiB answer;
// RFC 9112 §9.6 asks for a close in stages, and nginx's lingering close
// delivers it whole). Call it from the goroutine that reads, once the
// answer is decided. One recv(MSG_PEEK) per call.
func (c *Conn) DrainOnClose() {
	if !c.received || c.linger.Load() || !c.waiting() || c.linger.Swap(true) {
		return
	}
	if c.lingers != nil {
		c.lingers.add()
	}
}

// Close closes the connection, after draining it if LingerOnClose or
// DrainOnClose asked for that.
func (c *Conn) Close() error {
	if c.ln != nil && c.closed.CompareAndSwap(false, true) {
		defer c.ln.open.Add(-1)
		if c.ln.IdleTimeout > 0 {
			c.ln.mu.Lock()
			delete(c.ln.conns, c)
			c.ln.mu.Unlock()
		}
	}
	if c.linger.Swap(false) {
		c.drain(lingerTime, lingerQuiet)
		if c.lingers != nil {
			defer c.lingers.done()
		}
	}
	return c.Conn.Close()
}

// drain is the lingering part of Close: a FIN, then reads until the peer
// closes, is quiet for quiet, or total has passed.
func (c *Conn) drain(total, quiet time.Duration) {
	if c.held != nil {
		if _, err := c.writeHeld(nil, false); err != nil {
			return
		}
	}
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(total)
	buf := c.drainBuffer()
	defer c.releaseHeld()
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		if c.Conn.SetReadDeadline(time.Now().Add(min(left, quiet))) != nil {
			return
		}
		if _, err := c.Conn.Read(buf); err != nil {
			return // closed (EOF, reset), quiet, or out of time
		}
	}
}

// drainBuffer returns a buffer to read into and throw away: the held-write
// buffer, from the listener's pool, when there is one.
func (c *Conn) drainBuffer() []byte {
	if c.heldBuf == nil && c.holds != nil {
		if b, ok := c.holds.Get().(*[]byte); ok {
			c.heldBuf = b
		}
	}
	if c.heldBuf == nil {
		c.heldBuf = new([]byte)
	}
	if cap(*c.heldBuf) < maxHold {
		*c.heldBuf = make([]byte, maxHold)
	}
	return (*c.heldBuf)[:cap(*c.heldBuf)]
}

// lingerGroup counts the lingering closes of a listener's connections,
// from LingerOnClose (while the server still counts the connection as
// open) to the end of Close, so that a graceful stop can wait for them
// (Listener.WaitLingering). It is touched only on that error path.
type lingerGroup struct {
	mu sync.Mutex
	n  int
	// zero is closed when n drops back to 0 (nil while it is 0).
	zero chan struct{}
}

func (g *lingerGroup) add() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		g.zero = make(chan struct{})
	}
	g.n++
}

func (g *lingerGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		close(g.zero)
		g.zero = nil
	}
}

// wait waits until no close lingers, or ctx ends.
func (g *lingerGroup) wait(ctx context.Context) error {
	g.mu.Lock()
	zero := g.zero
	g.mu.Unlock()
	if zero == nil {
		return nil
	}
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrIdleClosed and ErrUnsolicited fail the first write of a request on a
// client connection that the peer closed, or sent bytes on, while it was
// idle (see NewClient). Nothing of the request was sent.
var (
	ErrIdleClosed  = errors.New("netconn: connection closed by the peer while idle")
	ErrUnsolicited = errors.New("netconn: peer sent unrequested bytes on an idle connection")
)

// checkIdle looks, without consuming anything, for what arrived on an idle
// client connection: one recv(MSG_PEEK|MSG_DONTWAIT) system call. A read
// would tell the same, but Go's netpoller readiness, the only other
// witness, cannot be asked without being reset.
func (c *Conn) checkIdle() error {
	c.peekN, c.peekErr = 0, 0
	if err := c.sys.Control(c.peek1); err != nil {
		return nil // closed: the write reports it
	}
	switch {
	case c.peekErr == syscall.EAGAIN:
		return nil
	case c.peekErr == 0 && c.peekN > 0:
		return ErrUnsolicited
	case c.peekErr == 0, c.peekErr == syscall.ECONNRESET:
		return ErrIdleClosed // EOF or reset
	}
	return nil // anything else: let the write meet it
}

// peek is Control's callback for checkIdle. A raw recvfrom: the syscall
// package's Recvfrom returns an address, which allocates; and RawSyscall6,
// without the scheduler's enter/exit, since MSG_DONTWAIT never blocks.
func (c *Conn) peek(fd uintptr) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		c.peekN, c.peekErr = n, e
		return
	}
}

// waiting reports whether bytes wait on the socket, unread (one
// recv(MSG_PEEK); a graceful stop's rare path).
func (c *Conn) waiting() bool {
	c.peekN, c.peekErr = 0, 0
	if c.sys == nil || c.sys.Control(c.peek) != nil {
		return false
	}
	return c.peekErr == 0 && c.peekN > 0
}

// ReadTimedOut reports whether a Read returned because its deadline had
// passed. A parser that wraps the read's error in its own (fasthttp's
// ErrBrokenChunk inside chunked framing, its ErrTimeout after the last
// chunk) hides the timeout from errors.Is; the connection still knows.
// Call it from the goroutine that reads.
func (c *Conn) ReadTimedOut() bool { return c.readTimedOut }

// RequestAcked reports, on a client Conn, whether the peer acknowledged
// any byte of the request being written (since the first write after the
// last read): an answer it sent then may be to this request. False where
// the kernel does not count acknowledged bytes (see NewClient).
func (c *Conn) RequestAcked() bool {
	if !c.client || !c.ackBaseOK {
		return false
	}
	_, acked, ok := c.tcpInfo()
	return ok && acked-c.ackBase > c.reqStart
}

// RequestUnreceived reports whether the peer closed the connection before
// any of the request last written on it reached its application, so that
// the request may be sent again on another connection even when it is
// not idempotent: the case of a backend that closed an idle connection
// just after the idle check looked (see NewClient). It takes three
// things. The first read since the request's write that met the
// stream's end met EOF, not a reset: the peer's FIN, which acknowledges
// all its kernel had received when it was sent, and that acknowledged
// none of the request (tcpi_bytes_acked). And the connection was then reset: the
// request met a socket already closed, not one the peer only shut for
// writing and may still read (a half-close; its acknowledgement of the
// request may be delayed). A reset with no FIN before it gives false: it
// acknowledges nothing, and may follow a request the peer did read. So
// does a FIN whose reset has not arrived yet (the request is then not
// sent again: safe, if not always needed), and anything that cannot be
// known: a connection not made by NewClient over TCP, or a kernel that
// does not count acknowledged bytes (older than Linux 4.1, or one that
// reports none on an open connection). Call it from the goroutine that
// writes and reads, after a read met EOF before any byte of the response,
// and before closing the connection.
func (c *Conn) RequestUnreceived() bool {
	if !c.sawEOF || !c.client || !c.ackBaseOK {
		return false
	}
	state, acked, ok := c.tcpInfo()
	return ok && state == tcpClose && acked-c.ackBase <= c.reqStart
}

// ResponseBegun reports whether any byte came on a client connection
// since the request last written on it began: false when the peer closed
// or reset the connection before answering at all. Call it from the
// goroutine that writes and reads.
func (c *Conn) ResponseBegun() bool { return c.answered }

// AnsweredBeforeRequest reports whether a response that closes the
// connection (Connection: close), just read on a client connection, was
// sent before any of the request last written on it reached the peer: the
// peer has acknowledged none of the request, while every segment it sends
// after its kernel received some of it carries that acknowledgement. It
// is then no answer to the request (a 408 a backend sends as it closes an
// idle connection, arriving just after the idle check looked), and the
// peer, having said it closes, must not process the request (RFC 9112,
// 9.6), so the request may go again on another connection. False where
// that cannot be known, as for RequestUnreceived. It costs a system call:
// call it only for responses that close the connection, from the
// goroutine that writes and reads.
func (c *Conn) AnsweredBeforeRequest() bool {
	if !c.client || !c.ackBaseOK || c.sent == c.reqStart {
		return false
	}
	_, acked, ok := c.tcpInfo()
	return ok && acked-c.ackBase <= c.reqStart
}

// tcpInfoBytesAcked is the offset of tcpi_bytes_acked (a __u64, since
// Linux 4.1) in struct tcp_info, whose first byte is tcpi_state; the
// kernel fills as much of the struct as it knows and says how much.
// tcpClose is the state of a connection that is over (here: reset).
const (
	tcpInfoBytesAcked = 120
	tcpClose          = 7
)

// tcpInfo is the connection's TCP state and how many bytes the peer has
// acknowledged (getsockopt TCP_INFO), and whether the kernel told.
func (c *Conn) tcpInfo() (state uint8, acked uint64, ok bool) {
	var info [256]byte
	size := uint32(len(info))
	var e syscall.Errno
	err := c.sys.Control(func(fd uintptr) {
		_, _, e = syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err != nil || e != 0 || size < tcpInfoBytesAcked+8 {
		return 0, 0, false
	}
	return info[0], binary.NativeEndian.Uint64(info[tcpInfoBytesAcked:]), true
}

// Listener wraps every connection it accepts with NewServer; its
// connections share one pool of HoldNextWrite buffers.
type Listener struct {
	net.Listener
	holds   sync.Pool
	lingers lingerGroup
	// OnAcceptError, when set, is told of each accept error that Accept
	// waits out (see Accept), and of one connection's error that it
	// skips (retryIn 0; at most one a second); set it before the first
	// Accept.
	OnAcceptError func(err error, retryIn time.Duration)
	// lastNotice is when OnAcceptError was last told of a skipped
	// connection's error; only Accept's goroutine uses it.
	lastNotice time.Time
	// The client timeouts, which the connections apply themselves, so
	// that the server needs to set none (fasthttp's ReadTimeout,
	// WriteTimeout and IdleTimeout, with their meaning there): a
	// connection's first request must be read within ReadTimeout, any
	// other within ReadTimeout of its first byte; a connection waits for
	// its next request no longer than IdleTimeout (ReadTimeout if zero);
	// an answer must be written within WriteTimeout. Each is measured
	// from when the read or write first has to wait, the only time a
	// deadline is set (nothing bounds what does not wait), which is at
	// most a few microseconds later than fasthttp measures. Zero is no
	// timeout. IdleTimeout also bounds the wait for a client's next
	// request inside the write of an answer (AwaitNextRequest), which is
	// off without it. Set them before the first Accept.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// mu guards conns, the open connections, kept only with an
	// IdleTimeout: Drain ends their waits.
	mu        sync.Mutex
	conns     map[*Conn]struct{}
	closed    chan struct{}
	closeOnce sync.Once
	draining  atomic.Bool
	hushing   atomic.Bool // HushSilent was called
	open      atomic.Int64
}

// NewListener returns a Listener accepting from ln.
func NewListener(ln net.Listener) *Listener {
	return &Listener{Listener: ln, closed: make(chan struct{})}
}

// Accept waits for the next connection and wraps it. Running out of file
// descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) is waited
// out, from 5 ms doubling to 1 s between tries, as net/http's server does:
// fasthttp would take such an error as permanent and stop serving for good
// while the socket, still open, queues connections nobody accepts. Close
// ends the wait. An error about the one connection being accepted (a
// network error it met before accept, a firewall's EPERM: see
// connectionError) is skipped, and Accept takes the next connection; past
// maxSkipped of them in a row they are waited out as above.
func (l *Listener) Accept() (net.Conn, error) {
	var wait time.Duration
	skipped := 0
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			cc := NewServer(c)
			cc.holds, cc.lingers, cc.ln = &l.holds, &l.lingers, l
			cc.timeouts = clientTimeouts{read: l.ReadTimeout, write: l.WriteTimeout, idle: l.IdleTimeout,
				on: l.ReadTimeout > 0 || l.WriteTimeout > 0 || l.IdleTimeout > 0}
			l.open.Add(1)
			if l.IdleTimeout > 0 {
				l.mu.Lock()
				if l.conns == nil {
					l.conns = make(map[*Conn]struct{})
				}
				l.conns[cc] = struct{}{}
				if l.hushing.Load() {
					// Accepted as HushSilent went over the connections,
					// after its pass: hushed here, as it would have
					// (HushSilent sets hushing before it takes mu; found
					// by review: its first read waited for client_read).
					cc.hushed.Store(true)
					cc.interruptAwait()
				}
				l.mu.Unlock()
			}
			return cc, nil
		}
		if skipped++; connectionError(err) && skipped <= maxSkipped {
			// One connection's failure, not the listener's: the next
			// one may be fine. Reported at most once a second, so that
			// a flood of them cannot flood the log.
			if now := time.Now(); l.OnAcceptError != nil && now.Sub(l.lastNotice) >= time.Second {
				l.lastNotice = now
				l.OnAcceptError(err, 0)
			}
			continue
		}
		// Past maxSkipped in a row, such an error is the listener's too
		// (a security policy refusing accept itself with EPERM), and is
		// waited out as below rather than retried in a spin (found by
		// review).
		if !exhausted(err) && !connectionError(err) {
			return nil, err
		}
		wait = min(max(2*wait, 5*time.Millisecond), time.Second)
		if l.OnAcceptError != nil {
			l.OnAcceptError(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// WaitLingering waits, until ctx ends, for the lingering closes
// (LingerOnClose) of the connections l accepted. A server's graceful stop
// calls it once the server has let go of them: the server no longer counts
// a connection whose close is still lingering.
func (l *Listener) WaitLingering(ctx context.Context) error {
	return l.lingers.wait(ctx)
}

// Drain closes the listener and marks the connections it accepted as
// draining (Conn.Draining), for a graceful stop: the server answers each
// request that still comes on them with "Connection: close", so that a
// busy keep-alive connection ends after an answer, when its client knows
// not to send another request on it, rather than being closed between
// requests, when one may already be on its way.
//
// Connections waiting for their client's next request inside the write
// of an answer (AwaitNextRequest) stop waiting, so that the server sees
// them idle and closes them. Those waiting for a first request of which
// no byte came are left to HushSilent. Only connections of a Listener
// with an IdleTimeout are known to Drain.
func (l *Listener) Drain() error {
	l.draining.Store(true)
	l.mu.Lock()
	for c := range l.conns {
		if c.awaiting.Load() {
			c.interruptAwait()
		}
	}
	l.mu.Unlock()
	return l.Close()
}

// HushSilent ends the wait of the connections l accepted that have sent
// nothing yet (a browser's preconnect, a balancer's spare), and of those
// it accepts from now on: their read fails as closed, which the server
// takes quietly; one whose first bytes come meanwhile reads on. fasthttp
// would wait 5 s from a connection's opening before it counted it idle,
// and a stop waited for it (found by review). A graceful stop calls it
// after Drain and a short settle, not with Drain: a client that
// connected just before the stop and writes its first request a moment
// later lost that request (found by review: unexpected EOF for a POST
// written 100 µs after the stop began).
func (l *Listener) HushSilent() {
	l.hushing.Store(true)
	l.mu.Lock()
	for c := range l.conns {
		if !c.spoke.Load() {
			c.hushed.Store(true)
			c.interruptAwait()
		}
	}
	l.mu.Unlock()
}

// Draining reports whether the listener that accepted c is draining
// (Listener.Drain); false for a connection no Listener accepted.
func (c *Conn) Draining() bool { return c.ln != nil && c.ln.draining.Load() }

// Open returns how many of the connections l accepted are not closed yet.
func (l *Listener) Open() int64 { return l.open.Load() }

// Close closes the listener and ends a wait in Accept. Only the first
// call closes; later ones return nil (a graceful stop drains the listener
// first, and fasthttp's shutdown closes it again).
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}

// connectionError reports whether an accept error is about the connection
// being accepted rather than the listener: Linux passes a new connection's
// pending network error to accept(2), whose manual asks to retry these as
// EAGAIN (Go's accept retries ECONNABORTED alone), and a firewall rule can
// refuse one connection with EPERM. fasthttp would take any of them as
// permanent and stop serving. nginx, too, goes on accepting.
func connectionError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO, syscall.ENOPROTOOPT,
		syscall.ENETDOWN, syscall.ENONET, syscall.EHOSTDOWN, syscall.EHOSTUNREACH,
		syscall.ENETUNREACH, syscall.EOPNOTSUPP, syscall.ETIMEDOUT, syscall.EPERM:
		return true
	}
	return false
}

// maxSkipped bounds the connection errors (connectionError) in a row that
// Accept skips at once; more are waited out as exhausted resources are.
const maxSkipped = 8

// exhausted reports whether err is an accept failing for want of a
// resource that frees up again.
func exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
