package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// upClient is one backend's HTTP/1.1 keep-alive client. Messages are
// fasthttp's (Request.Write, Response.ReadLimitBody); the connections are
// its own: each has a slot, and the idle ones sit on a lock-free stack, so
// taking one and giving it back is a compare-and-swap each. It replaces
// fasthttp's HostClient on the request path, which locks its pool twice
// per request and reads the clock four times: this client locks nothing,
// takes the start time from its caller and reads the clock once, at the
// end of the exchange (which the caller uses too). The idle timeout is
// kept twice: a
// connection idle for longer is never used (checked as it is taken), and
// the controller's sweep closes those left idle (sweep), so the client
// runs no goroutine of its own.
type upClient struct {
	addr    string
	dial    func(addr string) (net.Conn, error)
	maxBody int
	idle    time.Duration
	// response is timeouts.response, for each exchange (do).
	response time.Duration
	bufs     *upBufferPools // shared by every client of a proxy

	// slots has one entry per connection that may be open
	// (max_conns_per_backend). A slot is on the idle stack (its
	// connection is idle), on the free stack (no connection), or held by
	// one request (in use, or being dialled).
	slots []upSlot
	idleS slotStack
	// inFlight counts the requests this client carries (its backend's
	// counter also counts those of a client that replaced it, for new
	// settings, or that it replaced): a replaced client has drained
	// once it is 0. Beside idleS, which every request writes too.
	inFlight atomic.Int64
	freeS    slotStack
	// conns counts the open connections of this client and of those of
	// the same backend it replaced or that replace it (new settings),
	// which share it: the backend's sluice_upstream_connections counts
	// a replaced client's busy ones until they close.
	conns *connCount
	// sweepsStarted and sweepsEnded count closeIdle calls: while one
	// runs it holds the idle connections, which acquire waits out for at
	// most sweepWait (see there).
	sweepsStarted, sweepsEnded atomic.Uint64
	sweepWait                  time.Duration
	// closed is set once the backend has left (drained): connections
	// given back from then on are closed. retired is set once the
	// snapshot without this client is published: retries no longer go
	// through it (Proxy.usable). Set apart, so that a reload closes the
	// idle connections at once (they count against max_conns_per_backend
	// with its successor's) while a retry until the swap still has a
	// client to go through (found by review: closed first and tested by
	// retries, a retry in between found every target closed and got 502).
	closed  atomic.Bool
	retired atomic.Bool
}

// upSlot is one connection's place in an upClient. Only next is shared;
// conn and lastUse belong to whoever holds the slot (the stacks' atomic
// operations order them between holders).
type upSlot struct {
	next    atomic.Uint32
	conn    net.Conn
	lastUse int64 // UnixNano of the end of its last exchange
}

// upBufferPools pools the buffers of upstream exchanges, shared by every
// client of a proxy: pooled per request in flight, not held per
// connection, so they can be large. The two kinds are taken at different
// times. The writer is held from the request's write until its response
// is readable (netconn's write-then-wait), across the goroutine's wait,
// so there is about one per request in flight. The reader is taken only
// once the response is readable and given back when it has been read,
// usually without a wait in between, so a few readers serve every
// request instead of one 64 KiB reader per request in flight (at 256
// client connections the heap in use under load fell from 40 to 23 MB;
// CPU per request did not move).
type upBufferPools struct {
	writers sync.Pool // *upBuffers
	readers sync.Pool // *bufio.Reader
}

// upBuffers are the write side of one exchange: the buffered writer, and
// head for the request head when the body is sent apart (writeRequest).
type upBuffers struct {
	w    *bufio.Writer
	head []byte
}

func newUpBuffers(readSize, writeSize int) *upBufferPools {
	p := &upBufferPools{}
	p.writers.New = func() any { return &upBuffers{w: bufio.NewWriterSize(nil, writeSize)} }
	p.readers.New = func() any { return bufio.NewReaderSize(nil, readSize) }
	return p
}

func newUpClient(addr string, dial func(string) (net.Conn, error), s clientSettings, bufs *upBufferPools) *upClient {
	c := &upClient{addr: addr, dial: dial, maxBody: s.maxResponseBody, idle: s.idle, response: s.response, bufs: bufs,
		slots: make([]upSlot, max(s.maxConns, 1)), sweepWait: maxSweepWait, conns: new(connCount)}
	for i := len(c.slots) - 1; i >= 0; i-- {
		c.freeS.push(c.slots, uint32(i))
	}
	return c
}

// do sends req on an idle connection, or a new one, and reads the
// response into resp. now is the caller's clock reading; the client's
// response timeout (timeouts.response) bounds the whole exchange from
// now, request write included: a retry through the client a reload made
// goes by the new timeout (found by review: it took the snapshot's that
// the request began under). It returns when
// the exchange ended (the one clock reading it makes: it dates the
// connection's use, and the caller's metrics). Any error leaves the
// connection closed. hints, when not nil, is sent each 103 Early Hints
// the backend answers first (see readResponse); nil for a client that
// cannot take one (HTTP/1.0). loan, when not nil, takes the response's
// body if it can be lent (readLentBody). fresh asks for a new connection,
// not an idle one (see acquire).
func (c *upClient) do(req *fasthttp.Request, resp *fasthttp.Response, hints earlyHinter, loan *bodyLoan, now time.Time, fresh bool) (time.Time, error) {
	i, reused, err := c.acquire(now.UnixNano(), fresh)
	if err != nil {
		return time.Now(), err
	}
	s := &c.slots[i]
	if !reused {
		// The response timeout starts once the connection is made: the
		// dial had timeouts.connect of its own (found by review: a slow
		// connect took its time out of the response's).
		now = time.Now()
	}
	if err := s.conn.SetDeadline(now.Add(c.response)); err != nil {
		c.discard(i)
		return time.Now(), err
	}
	// The target goes out as it came (Request.Write rebuilds it from the
	// parsed URI once routing has parsed it).
	req.URI().DisablePathNormalizing = true
	b := c.bufs.writers.Get().(*upBuffers)
	err = b.writeRequest(s.conn, req)
	c.bufs.writers.Put(b)
	resp.SkipBody = req.Header.IsHead()
	if err != nil {
		// The backend may have answered before the request's end and
		// stopped reading (a 413 for an upload too large, RFC 9112 §9.5):
		// its answer, already here, is passed on, as nginx and HAProxy
		// pass it, not a 502.
		// Only after a write the backend broke off once it had some of
		// the request (its kernel acknowledged bytes of it): not the idle
		// check's failures, nor bytes that came unasked before the
		// request reached it, which are no answer to it.
		if (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, netconn.ErrAnsweredEarly)) &&
			!errors.Is(err, netconn.ErrIdleClosed) && !errors.Is(err, netconn.ErrUnsolicited) &&
			requestAcked(s.conn) && c.earlyAnswer(s.conn, resp, hints, loan) {
			err = nil
		}
		if err != nil && !reused && (errors.Is(err, netconn.ErrIdleClosed) || errors.Is(err, netconn.ErrUnsolicited)) {
			// The check before the first request found a new connection
			// closed, or sent bytes unasked: refused, in effect.
			err = errNewConnClosed
		}
		// A kept-alive connection that broke before any byte of an
		// answer: by a reset, or by a close the write saw as the peer
		// ending the exchange early with nothing to read (found by
		// review: a FIN in the middle of an upload got 502 where a
		// reset got the one more try).
		if err != nil && reused && !errors.Is(err, netconn.ErrIdleClosed) && !errors.Is(err, netconn.ErrUnsolicited) &&
			(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, netconn.ErrAnsweredEarly)) &&
			!responseBegun(s.conn) {
			err = staleConnError{err}
		}
		c.discard(i)
		return time.Now(), err
	}
	r := c.bufs.readers.Get().(*bufio.Reader)
	r.Reset(s.conn)
	if loan != nil {
		loan.up, _ = s.conn.(*netconn.Conn)
	}
	suspect, err := readResponse(resp, r, c.maxBody, hints, loan)
	if loan != nil {
		loan.up = nil
	}
	end := time.Now()
	// Bytes after the response came with it unasked (a body after a HEAD
	// or 204 answer, a second response): the connection is out of step.
	// So may be one whose head was read leniently, or that had both a
	// Content-Length and a Transfer-Encoding.
	extra := r.Buffered() > 0 || suspect
	r.Reset(nil)
	c.bufs.readers.Put(r)
	switch {
	case err == io.EOF:
		// The connection closed before the response began (fasthttp
		// reports any failure of its first read as io.EOF; also a close
		// after a 1xx answer or at a chunk boundary, where any byte the
		// backend sent after reading the request acknowledges it, so
		// RequestUnreceived says false).
		unreceived, begun := requestUnreceived(s.conn), responseBegun(s.conn)
		c.discard(i)
		switch {
		case unreceived && !reused:
			// A new connection: the backend refused it, in effect.
			return end, errNewConnClosed
		case unreceived:
			return end, errClosedBeforeRequest
		case reused && !begun:
			return end, staleConnError{fasthttp.ErrConnectionClosed}
		}
		return end, fasthttp.ErrConnectionClosed
	case err != nil:
		if readTimedOut(s.conn) && !errors.Is(err, fasthttp.ErrTimeout) {
			// The deadline ended a read inside chunked framing, where
			// fasthttp's ErrBrokenChunk hides it: a 504 and a timeout
			// against the backend, not a 502 for a malformed answer
			// (found by review).
			err = fmt.Errorf("%w: %w", fasthttp.ErrTimeout, err)
		}
		c.discard(i)
		return end, err
	case resp.StatusCode() == fasthttp.StatusRequestTimeout && resp.ConnectionClose() &&
		answeredBeforeRequest(s.conn):
		// A 408 the backend sent as it closed an idle connection, before
		// the request reached it: no answer to this request, which goes
		// again on another connection (RFC 9110 15.5.9 lets a client
		// repeat a request a 408 answered on a new connection). Only a
		// 408: another closing answer sent early (a 503 at a connection
		// limit) is the backend's word, passed on.
		c.discard(i)
		if !reused {
			return end, errNewConnClosed
		}
		return end, errAnsweredBeforeRequest
	case extra || resp.ConnectionClose() || req.Header.ConnectionClose() ||
		resp.StatusCode() == fasthttp.StatusSwitchingProtocols:
		// A 101 means the backend may speak another protocol on it now.
		c.discard(i)
		return end, nil
	}
	s.lastUse = end.UnixNano()
	c.idleS.push(c.slots, i)
	if c.closed.Load() {
		// Close ran after this connection was last checked out: it
		// must not outlive it.
		c.closeIdle(0)
	}
	return end, nil
}

// readFinal reads a final answer at the start of r into resp, its body
// chunked if te (readChunked).
func readFinal(resp *fasthttp.Response, r *bufio.Reader, maxBody int, te bool) error {
	if te {
		return readChunked(resp, r, maxBody)
	}
	return resp.ReadLimitBody(r, maxBody)
}

// readChunked is resp.ReadLimitBody for a final head at the start of r,
// except that a chunked body's trailer section is read past, not into the
// headers: trailers are dropped (README, Forwarding), and fasthttp keeps
// the header section's fields of a name the Trailer field announces with
// the trailer's, so that deleting the trailer's deleted them too (found by
// review: Server-Timing, announced, went missing with no trailer sent).
func readChunked(resp *fasthttp.Response, r *bufio.Reader, maxBody int) error {
	resp.ResetBody()
	if err := resp.Header.Read(r); err != nil {
		return err
	}
	if resp.SkipBody || bodyless(resp.StatusCode()) {
		return nil
	}
	if err := resp.ReadBody(r, maxBody); err != nil || resp.Header.ContentLength() != -1 {
		return err // (not chunked after all: read as fasthttp reads it)
	}
	return skipTrailer(r)
}

// maxTrailer bounds a trailer section, as the head is bounded.
const maxTrailer = 16 << 10

var (
	errTrailerTooLong = errors.New("trailer section too long")
	errTrailerBareLF  = errors.New("trailer line not ended by CRLF")
)

// skipTrailer reads past a chunked body's trailer section, through its
// empty line. A line ended by a bare LF is refused, as bare LFs are in the
// chunks: taken for a field, "\n" left the read waiting for an end that
// had come, until timeouts.response (found by review: 504, counted
// against the backend).
//
// A line longer than r's buffer is read in pieces, up to maxTrailer in
// all: a head rewritten by takeFixed is read through a 4 KiB buffer, and
// one trailer line over that got 502 (found by review).
func skipTrailer(r *bufio.Reader) error {
	for n := 0; ; {
		line, err := r.ReadSlice('\n')
		long := false
		var before byte // the last byte of the piece before line
		for errors.Is(err, bufio.ErrBufferFull) {
			if n += len(line); n > maxTrailer {
				return errTrailerTooLong
			}
			long, before = true, line[len(line)-1]
			line, err = r.ReadSlice('\n')
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading the trailer: %w", err)
		}
		if !long && string(line) == "\r\n" {
			return nil
		}
		crlf := len(line) >= 2 && line[len(line)-2] == '\r' || long && len(line) == 1 && before == '\r'
		if !crlf {
			return errTrailerBareLF
		}
		if n += len(line); n > maxTrailer {
			return errTrailerTooLong
		}
	}
}

// bodyless reports whether an answer with status code has no body
// whatever its fields say (RFC 9112 §6.3).
func bodyless(code int) bool {
	return code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified
}

// earlyHinter passes a 103 Early Hints answer on to the client: the Link
// headers then in the response (fasthttp's RequestCtx.EarlyHints, which
// sends nothing to an HTTP/1.0 client or without a Link header).
type earlyHinter interface{ EarlyHints() error }

// maxInterim bounds the 1xx answers readResponse reads per exchange, as
// fasthttp's own read does (its maxInterimResponses): a backend that
// sends more fails the exchange (502). maxHints bounds the 103s of them
// passed on to the client.
const (
	maxInterim = 100
	maxHints   = 8
)

// readResponse reads the response on r into resp as resp.ReadLimitBody
// does, except that it reads every head's status line first (statusCode,
// which finds it as fasthttp's parser does) and reads interim answers
// itself, one by one, so that no head reaches the client unlooked at:
//
//   - A final status outside 100–599 fails the exchange (errBadStatus),
//     the body unread. fasthttp reads any three digits: it would pass
//     000 on as 200 (its StatusCode reads 0 as 200), and one below 100
//     with its body but without the Content-Length framing it (its writer
//     frames none below 200), which leaves the client's connection out of
//     step.
//   - A head whose empty line, or the line before it, ends in a bare LF.
//     RFC 9112 §2.2 lets a recipient take a lone LF for CRLF, and nginx and
//     HAProxy do; fasthttp instead waits for a CRLFCRLF that never comes,
//     until the exchange's deadline (a 504 for a response that had arrived
//     whole). Such a head is rewritten with CRLFs and read from the
//     rewrite, and suspect says so: the connection is then not reused, its
//     framing having been the backend's own. Allocates, on that path only.
//   - Interim answers (1xx but 101): a 103 Early Hints is passed on to
//     hints (when not nil) at once (fasthttp would drop it with the
//     others), so the client can start fetching what it links while the
//     backend works on the final answer, as HAProxy passes it on. 100 and
//     102 are dropped, as before. At most maxHints 103s are passed on;
//     more than maxInterim 1xx answers fail the exchange.
//
// suspect is also set for a final head with both a Content-Length and a
// Transfer-Encoding (lengthFields). A final head with a Content-Length
// alone has its body read into a buffer from loan (readLentBody) when
// loan is not nil.
func readResponse(resp *fasthttp.Response, r *bufio.Reader, maxBody int, hints earlyHinter, loan *bodyLoan) (suspect bool, err error) {
	if loan != nil {
		loan.plainHead, loan.manyFields = false, false
	}
	passed := 0
	sawBare := false
	for n := 0; ; n++ {
		if !skipEmptyLines(r) {
			return true, errBadStatus
		}
		end, bare := headEnd(r)
		sawBare = sawBare || bare
		if end == 0 {
			// No whole head in sight (a read error, or one longer than r's
			// buffer): fasthttp meets the same.
			return true, checkStatus(resp, resp.ReadLimitBody(r, maxBody))
		}
		head, _ := r.Peek(end)
		if loan != nil && manyFields(head[bytes.IndexByte(head, '\n')+1:]) { // past the status line
			loan.manyFields = true
		}
		code, http11, ok := statusCode(head)
		switch {
		case !ok:
			// No "HTTP/d.d ddd" status line: refused here rather than
			// left to fasthttp's parser, which would read it past every
			// check below (found by review: with two empty lines before
			// the status line, the head seen here was those lines alone,
			// and fasthttp read the answer unchecked).
			return true, errBadStatus
		case code < 100 || code > 599:
			return true, errBadStatus
		case code >= 200 || code == fasthttp.StatusSwitchingProtocols:
			cl, te, trailer, encodings := lengthFields(head)
			if te && !http11 {
				return true, errTENotHTTP11
			}
			// fasthttp keeps one Content-Encoding, the last line's; the
			// list is taken from the head before the read consumes it.
			var ce []byte
			if encodings > 1 {
				ce = repeatedContentEncoding(head)
			}
			// The framing leaves the connection unusable with both fields
			// (see lengthFields), or with neither: such a body ends at the
			// connection's close, which fasthttp marks, except when it
			// says "Connection: Upgrade" (as Apache's with mod_http2 do),
			// and the closed connection went back to the idle ones (found
			// by review).
			spent := cl && te || !cl && !te && !resp.SkipBody && !bodyless(code)
			switch {
			case bare || trailer:
				fixed := takeFixed(r, head, bare)
				fr := fixedReader(io.MultiReader(bytes.NewReader(fixed), r), fixed)
				if cl && !te && loan != nil && code >= 200 && !resp.SkipBody {
					// As a CRLF head's body: into a lent buffer, or one
					// that grows as the bytes come; fasthttp's read took
					// the whole announced length at once (found by
					// review: 8 MB held per request for one byte sent).
					// Never spliced: fr has taken body bytes from r.
					up := loan.up
					loan.up = nil
					err = readLentBody(resp, fr, fixed, maxBody, loan)
					loan.up = up
				} else {
					err = readFinal(resp, fr, maxBody, te)
				}
				// A bare-LF head is not trusted again; a head that only
				// had Trailer is, unless fr read past the answer (bytes
				// taken from r that no later read would see).
				suspect, err = bare || fr.Buffered() > 0 || spent, checkStatus(resp, err)
			case cl && !te && loan != nil && code >= 200 && !resp.SkipBody:
				suspect, err = false, readLentBody(resp, r, head, maxBody, loan)
			default:
				suspect, err = spent, checkStatus(resp, readFinal(resp, r, maxBody, te))
			}
			// A bare-LF interim head makes the connection as suspect as a
			// final one (found by review: it was reused).
			suspect = suspect || sawBare
			if ce != nil && err == nil {
				resp.Header.SetContentEncodingBytes(ce)
			}
			return suspect, err
		case n == maxInterim:
			return true, errTooManyInterim
		}
		if _, _, trailer, _ := lengthFields(head); bare || trailer {
			fixed := takeFixed(r, head, bare)
			err = resp.Header.Read(fixedReader(bytes.NewReader(fixed), fixed))
		} else {
			err = resp.Header.Read(r)
		}
		if err != nil {
			return false, err
		}
		if code == fasthttp.StatusEarlyHints && hints != nil && passed < maxHints {
			// A client gone away fails the final answer's write instead.
			_ = hints.EarlyHints()
			passed++
		}
	}
}

var (
	// errBadStatus fails an exchange whose final response has a status
	// code outside 100–599 (RFC 9110 §15: not a status code); the
	// connection is closed.
	errBadStatus = errors.New("upstream sent a status code outside 100-599")
	// errTENotHTTP11 fails an exchange whose final response has a
	// Transfer-Encoding and another version than HTTP/1.1: fasthttp
	// decodes chunked framing for exactly "HTTP/1.1" only, and would read
	// the body to the close and pass the chunks on as the body (or wait
	// out the response timeout). RFC 9112 §6.1 calls it faulty in
	// HTTP/1.0; "HTTP/1.2" or "HTTP/2.0" answers were read the same way
	// (found by review).
	errTENotHTTP11 = errors.New("upstream sent Transfer-Encoding in a response that is not HTTP/1.1")
	// errTooManyInterim fails an exchange with more than maxInterim 1xx
	// answers before the final one.
	errTooManyInterim = errors.New("upstream sent too many interim (1xx) answers")
)

// checkStatus is err, or errBadStatus for a response read whole whose
// status is outside 100–599: a second look, after fasthttp's own read,
// in case its reading of a status line and statusCode's ever differ (it
// cannot tell 000, which it reports as 200).
func checkStatus(resp *fasthttp.Response, err error) error {
	if c := resp.StatusCode(); err == nil && (c < 100 || c > 599) {
		return errBadStatus
	}
	return err
}

// statusCode reads the status code of the response head at the start of
// head as fasthttp's parser does: past any empty lines, after the first
// space of the status line and any more spaces, three digits and then a
// space or the line's end; and whether the status line says HTTP/1.1. ok
// is false where fasthttp finds no code or no HTTP/d.d version before it
// (and refuses the head). Without the version, a status line such as
// "Trailer: 200 x" was read as a 200 and then dropped as a Trailer field,
// and fasthttp took the next line for the status line: the client got
// an answer the backend never validly sent (found by fuzzing,
// FuzzResponseTrailerHead).
func statusCode(head []byte) (code int, http11, ok bool) {
	var line []byte
	for len(line) == 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return 0, false, false
		}
		line, head = head[:i], head[i+1:]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	sp := bytes.IndexByte(line, ' ')
	if sp != len("HTTP/1.1") || !bytes.HasPrefix(line, []byte("HTTP/")) || line[6] != '.' ||
		!isDigit(line[5]) || !isDigit(line[7]) {
		return 0, false, false
	}
	digits := bytes.TrimLeft(line[sp+1:], " ")
	if i := bytes.IndexByte(digits, ' '); i >= 0 {
		digits = digits[:i]
	}
	if len(digits) != 3 || !isDigit(digits[0]) || !isDigit(digits[1]) || !isDigit(digits[2]) {
		return 0, false, false
	}
	return int(digits[0]-'0')*100 + int(digits[1]-'0')*10 + int(digits[2]-'0'), string(line[:sp]) == "HTTP/1.1", true
}

// earlyAnswer reads, into resp, an answer the backend sent before the
// request's write failed (under the exchange's deadline, set before the
// write), and says whether a whole one came. The connection is not used
// again either way.
func (c *upClient) earlyAnswer(conn net.Conn, resp *fasthttp.Response, hints earlyHinter, loan *bodyLoan) bool {
	r := c.bufs.readers.Get().(*bufio.Reader)
	r.Reset(conn)
	_, err := readResponse(resp, r, c.maxBody, hints, loan)
	r.Reset(nil)
	c.bufs.readers.Put(r)
	return err == nil
}

// fixedReader reads a head rewritten by takeFixed, and what follows it
// from src, through a buffer that holds the whole head (fasthttp reads a
// head whole from its reader's buffer; bufio's default 4 KiB would fail a
// head the upstream read buffer took whole, up to upstreamReadBufferSize).
func fixedReader(src io.Reader, fixed []byte) *bufio.Reader {
	return bufio.NewReaderSize(src, max(len(fixed)+1, 4096))
}

// takeFixed consumes head, a head at the start of r in bare LFs (bare)
// or with a Trailer field, and returns it rewritten to be read from
// instead: with CRLFs (crlfLines), and without Trailer fields. Trailer
// only says which fields may follow a chunked body, and sluice drops both
// (skipTrailer, and Trailer as hop-by-hop); fasthttp failed the whole
// head on an empty list element or a name it bars from trailers
// (Set-Cookie, Content-Type), where nginx passes the answer on (found by
// review: 502).
func takeFixed(r *bufio.Reader, head []byte, bare bool) []byte {
	fixed := make([]byte, 0, len(head)+len(head)/4+2)
	if bare {
		fixed = crlfLines(fixed, head)
	} else {
		fixed = append(fixed, head...)
	}
	fixed = dropTrailerFields(fixed)
	_, _ = r.Discard(len(head))
	return fixed
}

// dropTrailerFields removes the Trailer fields, and the lines folded onto
// them (obs-fold), from head, a head in CRLF lines, in place. The status
// line (the first line that is not empty) is never a field.
func dropTrailerFields(head []byte) []byte {
	out := head[:0]
	dropping, status := false, true
	for rest := head; len(rest) > 0; {
		n := len(rest)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			n = i + 1
		}
		line := rest[:n]
		rest = rest[n:]
		switch {
		case status:
			status = len(bytes.TrimRight(line, "\r\n")) == 0
		case line[0] != ' ' && line[0] != '\t': // not folded
			dropping = isField(line, hdrTrailer)
		}
		if !dropping {
			out = append(out, line...)
		}
	}
	return out
}

// lengthFields reports whether a response head has a Content-Length
// field, a Transfer-Encoding field and a Trailer field. With both, fasthttp lets the
// Transfer-Encoding win and drops the Content-Length, which is what RFC
// 9112 §6.3 asks of an intermediary that forwards such a message; the
// same section says it "ought to be handled as an error" (a sign of
// response splitting), so the connection it came on is not used again,
// as HAProxy closes it. It also counts the Content-Encoding lines (the
// common head has none, or one). One IndexByte per line; only lines that
// start with c or t are compared.
func lengthFields(head []byte) (cl, te, trailer bool, encodings int) {
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break
		}
		line := head[:i]
		head = head[i+1:]
		if len(line) == 0 {
			continue
		}
		switch line[0] | 0x20 {
		case 'c':
			if isField(line, hdrContentLength) {
				cl = true
			} else if isField(line, strContentEncoding) {
				encodings++
			}
		case 't':
			te = te || isField(line, hdrTransferEncoding)
			trailer = trailer || isField(line, hdrTrailer)
		}
	}
	return cl, te, trailer, encodings
}

// repeatedContentEncoding returns the values of a response head's
// Content-Encoding lines joined with ", " when there are two or more
// (RFC 9110 §5.3: a list field's lines make one list), else nil. fasthttp
// keeps only the last line's value, and a client that undid that one
// would take the rest for the content (found by review: gzip then br
// reached the client as br). A line folded onto the next (obs-fold) goes
// on with a space, as fasthttp joins it.
func repeatedContentEncoding(head []byte) []byte {
	var vals [][]byte
	in := false // the last field line was a Content-Encoding
	for i, line := range bytes.Split(head, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case i == 0 || len(line) == 0:
			in = false
		case line[0] == ' ' || line[0] == '\t':
			if in {
				vals[len(vals)-1] = append(append(vals[len(vals)-1], ' '), bytes.TrimSpace(line)...)
			}
		default:
			in = false
			if colon := bytes.IndexByte(line, ':'); colon >= 0 && isField(line, strContentEncoding) {
				vals = append(vals, append([]byte(nil), bytes.Trim(line[colon+1:], " \t")...))
				in = true
			}
		}
	}
	if len(vals) < 2 {
		return nil
	}
	return bytes.Join(vals, []byte(", "))
}

var strContentEncoding = []byte("Content-Encoding")

// isField reports whether line is a header field named name (any case).
// Spaces or tabs before the colon are let pass, as fasthttp's parser lets
// them.
func isField(line, name []byte) bool {
	if len(line) <= len(name) {
		return false
	}
	// What follows a field name is its colon, or spaces before it: a
	// look at that byte first spares most other fields the comparison.
	if c := line[len(name)]; c != ':' && c != ' ' && c != '\t' || !bytes.EqualFold(line[:len(name)], name) {
		return false
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// maxLeadingEmpty bounds the empty lines skipped before a status line.
const maxLeadingEmpty = 1 << 10

// skipEmptyLines drops the empty lines (CRLF or bare LF) at the start of
// r, as fasthttp's parser skips them before a status line, so that the
// head headEnd finds is the status line's. It stops at a read error,
// which headEnd meets again, and reports false past maxLeadingEmpty
// bytes of them.
func skipEmptyLines(r *bufio.Reader) bool {
	for skipped := 0; skipped <= maxLeadingEmpty; {
		b, err := r.Peek(1)
		if err != nil {
			return true
		}
		switch b[0] {
		case '\n':
			_, _ = r.Discard(1)
			skipped++
		case '\r':
			if b, err = r.Peek(2); err != nil || b[1] != '\n' {
				return true
			}
			_, _ = r.Discard(2)
			skipped += 2
		default:
			return true
		}
	}
	return false
}

// headEnd finds the response head at the start of r: its length through
// its empty line, and whether a bare LF ends that line or the one before
// it. It reads, as fasthttp's read of the head would, only while r holds
// part of a head; it gives up (0, false) on a read error, which the read
// that follows meets again (a closed connection, a passed deadline), or
// on a head longer than r's buffer, leaving both to fasthttp.
func headEnd(r *bufio.Reader) (int, bool) {
	for n := 1; ; {
		if _, err := r.Peek(n); err != nil {
			return 0, false
		}
		b, _ := r.Peek(r.Buffered())
		if end, bare, ok := emptyLine(b); ok {
			return end, bare
		}
		if len(b) >= r.Size() {
			return 0, false
		}
		n = len(b) + 1
	}
}

// emptyLine finds the first empty line in b: the length of b through it,
// and whether it is other than the CRLF after a CRLF (a bare LF ends it
// or the line before it). ok is false when b holds no empty line yet.
// One IndexByte per line: a head has a few short lines.
func emptyLine(b []byte) (end int, bare, ok bool) {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, false, false
		}
		lf := i + j // a line ends here; is the next one empty?
		crlf := lf > 0 && b[lf-1] == '\r'
		switch rest := b[lf+1:]; {
		case len(rest) > 0 && rest[0] == '\n':
			return lf + 2, true, true
		case len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n':
			return lf + 3, !crlf, true
		}
		i = lf + 1
	}
}

// crlfLines appends head to dst with every bare LF made a CRLF.
func crlfLines(dst, head []byte) []byte {
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return append(dst, head...)
		}
		dst = append(dst, head[:i]...)
		if i == 0 || head[i-1] != '\r' {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		head = head[i+1:]
	}
	return dst
}

// writeRequest sends req on conn: through the write buffer, or, for a
// body of at least minDirectBody bytes on a connection that can take
// it, the head from b.head and the body from where it lies, in one
// writev, as nginx sends a buffered body: no copy of the body into the
// write buffer (see README, Performance, for what that saved).
func (b *upBuffers) writeRequest(conn net.Conn, req *fasthttp.Request) error {
	if rw, ok := conn.(requestWriter); ok && sendsBodyApart(req) {
		setUpstreamTarget(req)
		body := req.Body()
		b.head = appendRequestHead(b.head[:0], req, len(body))
		_, err := rw.WriteRequest(b.head, body)
		return err
	}
	setUpstreamTarget(req)
	b.w.Reset(conn)
	err := req.Write(b.w)
	if err == nil {
		err = b.w.Flush()
	}
	b.w.Reset(nil)
	return err
}

// setUpstreamTarget sets the request-target the upstream gets where the
// one rebuilt from the parsed URI would be wrong. It keeps the "?" of a
// request-target with an empty query
// ("/x?"), which the target rebuilt from the parsed URI loses, though RFC
// 3986 §6.2.3 does not make the two the same (found by review: sent as
// "/x"): the target is set as received (or as the origin-form an
// absolute-form one names), so that it goes out as set. Called last
// before the head is built, as a look at the URI parses it again.
//
// It also sends "OPTIONS *" for an absolute-form OPTIONS target with no
// path and no query ("OPTIONS http://example.com"), as RFC 9112 §3.2.4
// asks of the last proxy: rebuilt, it went as "OPTIONS /", a question
// about the resource "/" rather than the server (found by review).
func setUpstreamTarget(req *fasthttp.Request) {
	t := req.Header.RequestURI()
	if len(t) > 0 && t[0] != '/' && t[0] != '*' && req.Header.IsOptions() && len(t) == len("http://")+len(targetHost(t)) {
		req.SetRequestURI("*")
		return
	}
	if len(t) < 2 || bytes.IndexByte(t, '?') != len(t)-1 {
		return // no query, or one not empty ("/x?a?" is rebuilt as it came)
	}
	if t[0] != '/' {
		t = append(req.URI().RequestURI(), '?')
	}
	req.SetRequestURIBytes(t)
}

// requestWriter is a connection that writes a request's head and body
// without joining them (netconn.Conn).
type requestWriter interface {
	WriteRequest(head, body []byte) (int, error)
}

// minDirectBody is the shortest request body sent apart from its head;
// shorter ones cost little to copy.
const minDirectBody = 1 << 10

// sendsBodyApart reports whether req's body may be sent apart from the
// head that appendRequestHead makes: a body in memory, framed by its
// Content-Length (a chunked request, which may carry trailers, takes
// Request.Write's path), and nothing else Request.Write would add (a Host
// from the URI, Authorization from its userinfo).
func sendsBodyApart(req *fasthttp.Request) bool {
	return !req.IsBodyStream() && len(req.Body()) >= minDirectBody &&
		req.Header.ContentLength() == len(req.Body()) &&
		req.UseHostHeader && len(req.Header.Host()) > 0 && len(req.URI().Username()) == 0
}

// appendRequestHead appends the head that Request.Write sends before a
// body of n bytes framed by Content-Length: the request-target rebuilt
// from the URI where the handler has parsed it (RequestURI does that;
// one the handler set, an empty query's, stays as set) and the length
// set, as it does.
func appendRequestHead(dst []byte, req *fasthttp.Request, n int) []byte {
	req.RequestURI()
	req.Header.SetContentLength(n)
	return req.Header.AppendBytes(dst)
}

// errClosedBeforeRequest: the backend closed the connection before any of
// the request reached it (netconn.Conn.RequestUnreceived), so the request
// goes again on another connection, as when the idle check finds a
// connection closed.
var errClosedBeforeRequest = fmt.Errorf("upstream closed the connection before the request reached it: %w", netconn.ErrIdleClosed)

// errNewConnClosed: the backend closed a new connection (or answered a
// 408 as it closed it) before any of the request reached it: a refused
// connection, in effect, counted and retried as one (kindConnect), not as
// an idle connection's close, which it cannot be (found by review: a
// backend that closed every connection at once counted up to seven
// kind="idle" errors per request).
var errNewConnClosed = errors.New("upstream closed a new connection before the request reached it")

// errAnsweredBeforeRequest: a 408 the backend sent as it closed the
// connection, before the request reached it
// (netconn.Conn.AnsweredBeforeRequest); the request goes again on another
// connection, as for bytes the idle check finds.
var errAnsweredBeforeRequest = fmt.Errorf("upstream answered before the request reached it, and closed: %w", netconn.ErrUnsolicited)

// answeredBeforeRequest reports whether conn can tell that the response
// just read was sent before the request reached the peer (see
// netconn.Conn.AnsweredBeforeRequest).
func answeredBeforeRequest(conn net.Conn) bool {
	u, ok := conn.(interface{ AnsweredBeforeRequest() bool })
	return ok && u.AnsweredBeforeRequest()
}

// requestAcked reports whether the peer acknowledged bytes of the request
// last written on conn (see netconn.Conn.RequestAcked).
func requestAcked(conn net.Conn) bool {
	a, ok := conn.(interface{ RequestAcked() bool })
	return ok && a.RequestAcked()
}

// responseBegun reports whether any byte of an answer came on conn since
// the request last written on it began (see netconn.Conn.ResponseBegun);
// true where that cannot be known.
func responseBegun(conn net.Conn) bool {
	b, ok := conn.(interface{ ResponseBegun() bool })
	return !ok || b.ResponseBegun()
}

// staleConnError is the failure of a connection taken idle from the pool
// that broke before any byte of an answer came: the write failed with a
// reset or a broken pipe, or the first read met a close or a reset. The
// backend most likely closed the idle connection as the request went out
// (its keep-alive timeout ran out just after the idle check looked), and
// may not have read the request at all; but it may have, and then died,
// and nothing on the wire tells the two apart. So an idempotent request
// is sent once more, on another connection to the same backend, without
// counting a retry or a failure against the backend, as Go's net/http
// Transport does for a request it may replay; any other request fails
// as the error inside says (a reset, 502).
type staleConnError struct{ err error }

// errStaleConn matches every staleConnError (errors.Is), so that the
// handler can ask without errors.As, whose target would escape.
var errStaleConn = errors.New("stale upstream connection")

func (e staleConnError) Is(target error) bool { return target == errStaleConn }

func (e staleConnError) Error() string {
	return "upstream closed a reused connection before answering: " + e.err.Error()
}
func (e staleConnError) Unwrap() error { return e.err }

// requestUnreceived reports whether conn can tell that none of the request
// last written on it reached the peer (see netconn.Conn.RequestUnreceived).
// readTimedOut reports whether a read on conn returned for its deadline.
func readTimedOut(conn net.Conn) bool {
	t, ok := conn.(interface{ ReadTimedOut() bool })
	return ok && t.ReadTimedOut()
}

func requestUnreceived(conn net.Conn) bool {
	u, ok := conn.(interface{ RequestUnreceived() bool })
	return ok && u.RequestUnreceived()
}

// maxSweepWait bounds how long acquire waits for a sweep to give back the
// idle connections it holds.
const maxSweepWait = 10 * time.Millisecond

// acquire takes an idle connection not idle for longer than the idle
// timeout at now (reused), or dials one in a free slot. fresh asks for
// a new connection: it closes an idle one if that frees the only slot.
func (c *upClient) acquire(now int64, fresh bool) (slot uint32, reused bool, err error) {
	if fresh {
		return c.dialFresh()
	}
	var waitUntil time.Time
	for {
		started, ended := c.sweepsStarted.Load(), c.sweepsEnded.Load()
		i, ok := c.idleS.pop(c.slots)
		if !ok {
			if started == ended && c.sweepsStarted.Load() == started {
				break // no sweep held connections at any time during the pop
			}
			// A sweep holds the idle connections while it looks at
			// them (a few microseconds, unless it was preempted): wait
			// for them rather than dial one more, or answer 503 at the
			// connection limit.
			if waitUntil.IsZero() {
				waitUntil = time.Now().Add(c.sweepWait)
			} else if time.Now().After(waitUntil) {
				break
			}
			runtime.Gosched()
			continue
		}
		if now-c.slots[i].lastUse <= int64(c.idle) {
			return i, true, nil
		}
		c.discard(i)
	}
	return c.dialIn()
}

// dialFresh dials a new connection in a free slot, or in the slot of an
// idle connection it closes when none is free.
func (c *upClient) dialFresh() (uint32, bool, error) {
	i, ok := c.freeS.pop(c.slots)
	if !ok {
		j, idle := c.idleS.pop(c.slots)
		if !idle {
			return 0, false, fasthttp.ErrNoFreeConns
		}
		c.discard(j)
		if i, ok = c.freeS.pop(c.slots); !ok {
			return 0, false, fasthttp.ErrNoFreeConns
		}
	}
	return c.dialSlot(i)
}

// dialIn dials a new connection in a free slot.
func (c *upClient) dialIn() (uint32, bool, error) {
	i, ok := c.freeS.pop(c.slots)
	if !ok {
		return 0, false, fasthttp.ErrNoFreeConns
	}
	return c.dialSlot(i)
}

// dialSlot dials a new connection in held free slot i, if the backend's
// open connections, this client's and those of the clients it replaced or
// that replace it (open, shared), are under this client's limit: each
// client has its own slots, and a reload that gave a backend a new client
// while the old one's connections were busy let the backend get twice
// max_conns_per_backend (found by review).
func (c *upClient) dialSlot(i uint32) (uint32, bool, error) {
	for limit := int64(len(c.slots)); ; {
		n := c.conns.open.Load()
		if n >= limit {
			c.freeS.push(c.slots, i)
			return 0, false, fasthttp.ErrNoFreeConns
		}
		if c.conns.open.CompareAndSwap(n, n+1) {
			break
		}
	}
	c.conns.dialing.Add(1)
	conn, err := c.dial(c.addr)
	c.conns.dialing.Add(-1)
	if err != nil {
		c.conns.open.Add(-1)
		c.freeS.push(c.slots, i)
		return 0, false, err
	}
	c.slots[i].conn = conn
	return i, false, nil
}

// discard closes the connection of held slot i and frees the slot.
func (c *upClient) discard(i uint32) {
	s := &c.slots[i]
	_ = s.conn.Close()
	s.conn = nil
	c.conns.open.Add(-1)
	c.freeS.push(c.slots, i)
}

// closeIdle closes the idle connections last used before cutoff
// (UnixNano; 0 closes them all) and puts the others back in their order.
// Requests that find the stack empty meanwhile dial a new connection.
func (c *upClient) closeIdle(cutoff int64) {
	c.sweepsStarted.Add(1)
	defer c.sweepsEnded.Add(1)
	var keep [64]uint32
	kept := keep[:0]
	for {
		i, ok := c.idleS.pop(c.slots)
		if !ok {
			break
		}
		if cutoff != 0 && c.slots[i].lastUse >= cutoff {
			kept = append(kept, i)
			continue
		}
		c.discard(i)
	}
	for j := len(kept) - 1; j >= 0; j-- {
		c.idleS.push(c.slots, kept[j])
	}
}

// sweep closes the connections idle for longer than the idle timeout at
// now (the controller's timed work).
func (c *upClient) sweep(now time.Time) { c.closeIdle(now.Add(-c.idle).UnixNano()) }

// Close closes the idle connections, and those in use as they are given
// back: the backend has left.
func (c *upClient) Close() {
	c.closed.Store(true)
	c.closeIdle(0)
}

// begin and end bracket a request on the client, and InFlight counts
// those between.
func (c *upClient) begin()          { c.inFlight.Add(1) }
func (c *upClient) end()            { c.inFlight.Add(-1) }
func (c *upClient) InFlight() int64 { return c.inFlight.Load() }

// ConnsCount is the number of open connections, idle or in use, of
// this client and of those that share its count (see conns).
func (c *upClient) ConnsCount() int { return int(c.conns.open.Load() - c.conns.dialing.Load()) }

// connCount counts a backend's connections (upClient.conns): open
// counts those being dialled too, which max_conns_per_backend bounds;
// dialing counts those alone, which the gauge of open connections
// leaves out (found by review: connects hanging on a backend that drops
// SYNs read as open).
type connCount struct{ open, dialing atomic.Int64 }

// slotStack is a lock-free LIFO of slot indexes (a Treiber stack). The
// head packs the top index+1 (0: empty) with a count of changes, so a
// pop that read a top which has since been popped and pushed again fails
// its compare-and-swap (the ABA problem) instead of corrupting the stack.
type slotStack struct{ head atomic.Uint64 }

func (st *slotStack) push(slots []upSlot, i uint32) {
	for {
		h := st.head.Load()
		slots[i].next.Store(uint32(h))
		if st.replace(h, i+1) {
			return
		}
	}
}

func (st *slotStack) pop(slots []upSlot) (uint32, bool) {
	for {
		h := st.head.Load()
		top := uint32(h)
		if top == 0 {
			return 0, false
		}
		if st.replace(h, slots[top-1].next.Load()) {
			return top - 1, true
		}
	}
}

// replace makes top (index+1) the top of the stack if the head is still
// old, and counts the change.
func (st *slotStack) replace(old uint64, top uint32) bool {
	return st.head.CompareAndSwap(old, (old>>32+1)<<32|uint64(top))
}
