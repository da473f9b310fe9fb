package netconn

import (
	"bytes"
	"errors"
)

// ErrBareLFHead fails the read that would have waited for the rest of a
// request head whose blank line, or the line before it, ends in a bare LF
// (see headWatch). A server answers it with 400.
var ErrBareLFHead = errors.New("netconn: request head ends in a bare LF")

// headWatch follows, on a server connection, the request head at the start
// of each turn (the reads that follow a write), to find heads that end
// in a bare LF: "\n\n", "\n\r\n" or "\r\n\n". fasthttp's server reads a
// head only once the CRLFCRLF that ends it has arrived (a bare LF inside
// it is fine); for one of these, which nginx and HAProxy take as ended,
// it waits for more until the read timeout, then answers 408. The watch
// passes on the bytes up to that blank line, none after it, and fails the
// next read in the turn (ErrBareLFHead), which fasthttp's server then
// answers at once (400 through its error handler).
//
// Only a turn whose first read starts with a request line (a method in
// capitals, a space, the target, " HTTP/d.d"; after empty lines, which
// fasthttp skips) and holds its LF is watched, so that a read that
// continues an earlier request, its body say, is not taken for a head.
// Not watched either: the turn after a 100 Continue (ExpectBody), which
// is the body; one that begins by flushing a held write (the server reads
// on in the middle of pipelined requests); what follows a head that ended
// well in the same turn (a pipelined head behind it). Those, and a head
// whose request line arrives in more than one read, wait as before.
type headWatch struct {
	state uint8
	// afterRequestLine says no field line has ended yet; prevCR says the
	// last line that ended did so with CRLF.
	afterRequestLine bool
	prevCR           bool
	// partLen counts the bytes of the current line read so far (up to 2:
	// a blank line has at most one, a CR), partCR says the last was a CR.
	partLen uint8
	partCR  bool
	// headMethod says the turn's request line is a HEAD's: an answer the
	// server makes itself (a refusal) must have no body (HeadRequest).
	// Only a line at the very start of the turn is taken (began): after
	// an empty line the turn may continue a head the server flushed an
	// answer in the middle of, and a body line reading "HEAD ..." took a
	// POST's 408 text away (found by review).
	headMethod bool
	began      bool
	// ended says the watch saw the turn's request line and then the
	// blank line that ends its head well; headOff alone also follows a
	// read that began with no request line (a body's tail).
	ended bool
}

// headWatch states.
const (
	headOff    = iota // not watching until the next turn
	headStart         // a turn began: its first bytes are looked at
	headFields        // past the request line, looking for the blank line
	headBare          // the head ended in a bare LF: the next read fails
)

// start begins watching a turn.
func (w *headWatch) start() { *w = headWatch{state: headStart} }

// noteMethod notes whether line, the turn's first, is a HEAD's (see
// headMethod); an empty line or any later one only ends the noting.
func (w *headWatch) noteMethod(line []byte) {
	if !w.began {
		w.began = true
		w.headMethod = bytes.HasPrefix(line, []byte("HEAD "))
	}
}

// scan looks at b, the bytes a read returned while watching, and returns
// how many of them the reader gets: all of them, unless the head ends in
// a bare LF inside b; then those up to the LF that ends its blank line.
func (w *headWatch) scan(b []byte) int {
	i := 0
	if w.state == headStart && w.partCR {
		// The last read ended in a CR before the request line: an empty
		// line only if this one starts with its LF.
		w.partCR = false
		if b[0] != '\n' {
			w.state = headOff
			return len(b)
		}
		i, w.began = 1, true // (an empty line: see headMethod)
	}
	for w.state == headStart {
		lf := bytes.IndexByte(b[i:], '\n')
		if lf < 0 {
			switch rest := b[i:]; {
			case len(rest) == 1 && rest[0] == '\r':
				w.partCR = true
			case len(rest) > 0:
				// A request line that comes in more than one read is not
				// watched, but a HEAD is told by its first five bytes.
				w.noteMethod(rest)
				w.state = headOff
			}
			return len(b)
		}
		line := b[i : i+lf]
		cr := len(line) > 0 && line[len(line)-1] == '\r'
		if cr {
			line = line[:len(line)-1]
		}
		i += lf + 1
		// Also for a line the watch does not take for a request line
		// (an odd version): its refusal must know it too.
		w.noteMethod(line)
		switch {
		case len(line) == 0:
			// An empty line before the request line, which fasthttp
			// skips (RFC 9112 §2.2 asks servers to skip at least one).
		case isRequestLine(line):
			w.state, w.afterRequestLine, w.prevCR = headFields, true, cr
		default:
			w.state = headOff
			return len(b)
		}
	}
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			rest := b[i:]
			w.partLen = uint8(min(int(w.partLen)+len(rest), 2))
			w.partCR = rest[len(rest)-1] == '\r'
			return len(b)
		}
		cr := w.partCR
		if j > 0 {
			cr = b[i+j-1] == '\r'
		}
		length := int(w.partLen) + j
		w.partLen, w.partCR = 0, false
		if length == 0 || length == 1 && cr {
			// The blank line. fasthttp takes it as the end at once when it
			// and the line before end in CRLF, or when it is a CRLF right
			// after the request line (an empty block).
			if cr && (w.prevCR || w.afterRequestLine) {
				w.state, w.ended = headOff, true
				return len(b)
			}
			w.state = headBare
			return i + j + 1
		}
		w.afterRequestLine, w.prevCR = false, cr
		i += j + 1
	}
	return len(b)
}

// isRequestLine reports whether line (without its line end) looks like
// an HTTP/1 request line: a method in capital letters, a space, a target
// and " HTTP/" with a version. It tells a head from the middle of a
// body; fasthttp's parser still judges the line.
func isRequestLine(line []byte) bool {
	const version = len(" HTTP/1.1")
	n := len(line)
	if n < len("A / HTTP/1.1") || line[0] < 'A' || line[0] > 'Z' {
		return false
	}
	v := line[n-version:]
	if v[0] != ' ' || string(v[1:6]) != "HTTP/" || !isDigit(v[6]) || v[7] != '.' || !isDigit(v[8]) {
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	return sp > 0 && sp < n-version-1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
