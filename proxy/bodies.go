package proxy

import (
	"bufio"
	"errors"
	"io"
	"sync"

	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// Response bodies are read into buffers the proxy lends to one answer at
// a time, not into the client connection's own body buffer: the
// connection gives the buffer back as soon as the server has passed the
// answer on (netconn.Conn.LendToAnswer), so the next answer on any
// connection reuses it while it is still in the processor's cache, and an
// idle connection holds no body. Kept per connection, 64 connections
// fetching 64 KiB each wrote and read 4 MiB of buffers in turn (paired
// A/B, README, Performance). Only a body with a Content-Length, the
// common case, is lent; a chunked or close-delimited one is read by
// fasthttp into the connection's buffer as before.

// bodyClasses are the lent buffers' sizes: a body takes the smallest that
// holds it. Longer bodies are not lent (keptBodyLimit: fasthttp lets those
// go after their request too).
var bodyClasses = [...]int{4 << 10, 16 << 10, 64 << 10, keptBodyLimit}

// bodyPools pools lent body buffers by class.
type bodyPools struct {
	classes [len(bodyClasses)]sync.Pool
}

// bodyBuffer is one lent body buffer; GiveBack returns it to its pool.
type bodyBuffer struct {
	b    []byte
	pool *sync.Pool
}

// GiveBack returns b to its pool (netconn.Lent); a nil b is nothing.
func (b *bodyBuffer) GiveBack() {
	if b != nil {
		b.pool.Put(b)
	}
}

// get returns a buffer of at least n bytes, nil when n is longer than
// any class.
func (p *bodyPools) get(n int) *bodyBuffer {
	for i, size := range bodyClasses {
		if n <= size {
			if b, ok := p.classes[i].Get().(*bodyBuffer); ok {
				return b
			}
			return &bodyBuffer{b: make([]byte, size), pool: &p.classes[i]}
		}
	}
	return nil
}

// bodyLoan is where an exchange reads a response body it may lend: the
// pools to take a buffer from, and the buffer that holds the response's
// body, for the handler to lend to the answer. A nil *bodyLoan reads
// every body the usual way (a client connection that cannot give a
// buffer back).
type bodyLoan struct {
	pools *bodyPools
	buf   *bodyBuffer
	// pipes pools the pipes long bodies are spliced through; up is the
	// upstream connection the exchange reads from (nil: no splicing),
	// pipe the pipe that holds the response's body.
	pipes    *pipePool
	bigPipes *pipePool // for bodies longer than pipeSize
	up       *netconn.Conn
	pipe     *bodyPipe
	// plainHead says the response's head was read by readPlainHead, its
	// hop-by-hop fields left out: the handler has none to look for.
	plainHead bool
	// manyFields says a head the response read had more than
	// maxKeptFields fields (see manyFields).
	manyFields bool
}

// hold makes b the loan's buffer; one an earlier attempt's response
// held is given back (the response read since no longer points at it).
func (l *bodyLoan) hold(b *bodyBuffer) {
	l.drop()
	l.buf = b
}

// drop gives the loan's buffer back, if it holds one.
func (l *bodyLoan) drop() {
	if l.buf != nil {
		l.buf.GiveBack()
		l.buf = nil
	}
	if l.pipe != nil {
		l.pipe.GiveBack()
		l.pipe = nil
	}
}

// readLentBody reads a final response whose head has a Content-Length
// and no Transfer-Encoding, as resp.ReadLimitBody would, but its body
// into a buffer from loan's pools when one holds it. head is the
// response head at the start of r: readPlainHead reads it when it is
// plain, fasthttp's parser otherwise (a Content-Length it refuses fails
// the exchange as before).
func readLentBody(resp *fasthttp.Response, r *bufio.Reader, head []byte, maxBody int, loan *bodyLoan) error {
	resp.ResetBody()
	if readPlainHead(&resp.Header, head) {
		_, _ = r.Discard(len(head))
		loan.plainHead = true
	} else if err := resp.Header.Read(r); err != nil {
		return err
	}
	n := resp.Header.ContentLength()
	switch code := resp.StatusCode(); {
	case code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified || n == 0:
		// No body (RFC 9112 §6.3: 204 and 304 have none whatever their
		// Content-Length says, as fasthttp reads them).
		return nil
	case n < 0:
		return resp.ReadBody(r, maxBody)
	case maxBody > 0 && n > maxBody:
		return fasthttp.ErrBodyTooLarge
	}
	if pp := loan.pipesFor(n); pp != nil {
		if p := pp.get(); p != nil {
			return spliceBody(resp, r, n, loan, p)
		}
	}
	b := loan.pools.get(n)
	if b == nil {
		return readLongBody(resp, r, n)
	}
	if _, err := io.ReadFull(r, b.b[:n]); err != nil {
		b.GiveBack()
		return bodyCut(err)
	}
	resp.SetBodyRaw(b.b[:n])
	loan.hold(b)
	return nil
}

// spliceBody reads a body of n bytes into pipe p: the part r holds
// already into a lent buffer, the rest from the upstream connection
// straight into the pipe. A pipe that runs out of slots before the body
// ends (a backend that wrote it in many small pieces) gives way to a
// buffer.
func spliceBody(resp *fasthttp.Response, r *bufio.Reader, n int, loan *bodyLoan, p *bodyPipe) error {
	k := min(r.Buffered(), n)
	if k > 0 {
		p.pfx = loan.pools.get(k)
		p.prefix = p.pfx.b[:k]
		got, _ := io.ReadFull(r, p.prefix) // buffered: cannot fail
		p.prefix = p.prefix[:got]
	}
	m, err := loan.up.ReadToPipe(p.fds.w, n-len(p.prefix))
	p.inPipe = m
	if errors.Is(err, netconn.ErrSpliceUnsupported) {
		for _, pp := range [...]*pipePool{loan.pipes, loan.bigPipes} {
			if pp != nil {
				pp.off.Store(true)
			}
		}
	}
	if errors.Is(err, netconn.ErrPipeFull) || errors.Is(err, netconn.ErrSpliceUnsupported) {
		return unsplice(resp, r, n, loan, p)
	}
	if err != nil {
		p.GiveBack()
		return bodyCut(err)
	}
	resp.SetBodyStream(p, n)
	loan.drop()
	loan.pipe = p
	return nil
}

// unsplice reads a body of n bytes whose first part is in p (its prefix
// and what the pipe took) into a lent buffer instead, the rest from r.
func unsplice(resp *fasthttp.Response, r *bufio.Reader, n int, loan *bodyLoan, p *bodyPipe) error {
	b := loan.pools.get(n)
	var body []byte
	if b != nil {
		body = b.b[:n]
	} else {
		// Longer than any lent buffer (a big pipe's body): the bytes are
		// here or on their way, at most bigPipeSize.
		body = make([]byte, n)
	}
	got := 0
	for len(p.prefix) > 0 || p.inPipe > 0 {
		k, err := p.Read(body[got:])
		if err != nil {
			b.GiveBack()
			p.GiveBack()
			return err
		}
		got += k
	}
	p.GiveBack()
	if _, err := io.ReadFull(r, body[got:]); err != nil {
		b.GiveBack()
		return bodyCut(err)
	}
	resp.SetBodyRaw(body)
	loan.hold(b) // (nil for an allocated body: the loan holds none)
	return nil
}

// pipesFor is the pool of pipes a body of n bytes is spliced through,
// nil when it is not spliced: too short, too long, no upstream socket
// to splice from, or splicing off.
func (l *bodyLoan) pipesFor(n int) *pipePool {
	pp := l.pipes
	if n > pipeSize {
		pp = l.bigPipes
	}
	if n < spliceMinBody || n > bigPipeSize || l.up == nil || pp == nil || pp.off.Load() {
		return nil
	}
	return pp
}

// bodyCut is the error of a body read that ended early.
func bodyCut(err error) error {
	if errors.Is(err, io.EOF) {
		// Not the close before a response that io.EOF stands for in
		// upClient.do: the head came.
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLongBody reads a body of n bytes, longer than any lent buffer, into
// a buffer that doubles as bytes arrive. fasthttp's ReadBody would
// allocate n at once, when the head comes: a backend that announced 60 MB
// and sent one byte held 60 MB for the response timeout (found by
// review).
func readLongBody(resp *fasthttp.Response, r *bufio.Reader, n int) error {
	body := make([]byte, 0, min(n, 2*keptBodyLimit))
	for len(body) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(n, 2*cap(body)))
			copy(grown, body)
			body = grown
		}
		k, err := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+k]
		if err != nil && len(body) < n {
			return bodyCut(err)
		}
	}
	resp.SetBodyRaw(body)
	return nil
}
