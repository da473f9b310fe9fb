package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"sluice/config"
)

// prober sends the probes of one target. It belongs to that target's probe
// goroutine, which reuses its request bytes and read buffer.
type prober struct {
	addr    string
	tcp     bool
	timeout time.Duration
	expect  []config.StatusRange
	req     []byte // the whole HTTP request; nil for tcp
	bad     string // non-empty when the check cannot be sent
	br      *bufio.Reader
	dialer  net.Dialer
}

// defaultExpect is the success range when a check lists none.
var defaultExpect = []config.StatusRange{{Lo: 200, Hi: 399}}

func newProber(t Target) *prober {
	hc := t.Check
	p := &prober{addr: t.Addr, tcp: hc.Type == "tcp", timeout: hc.Timeout, expect: hc.ExpectStatus}
	if p.timeout <= 0 {
		p.timeout = defaultTimeout
	}
	if len(p.expect) == 0 {
		p.expect = defaultExpect
	}
	if p.tcp {
		return p
	}
	path, host := hc.Path, hc.Host
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = t.Addr
	}
	if strings.ContainsAny(path, " \r\n") || strings.ContainsAny(host, " \r\n") {
		p.bad = "invalid check: space or line break in path or host"
		return p
	}
	p.req = []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: sluice-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n")
	p.br = bufio.NewReaderSize(nil, 1024)
	return p
}

// probe sends one probe, bounded by the check's timeout and by ctx, and
// returns whether it succeeded and a short reason either way. The
// connection is always closed before it returns.
func (p *prober) probe(ctx context.Context) (ok bool, reason string) {
	if p.bad != "" {
		return false, p.bad
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return false, connectReason(err)
	}
	defer conn.Close()
	if p.tcp {
		return true, "connected"
	}
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return false, "connect: " + err.Error()
	}
	// Unblock the write or read at once when the probe is stopped.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(p.req); err != nil {
		return false, ioReason("write", err)
	}
	in := countingReader{r: conn}
	p.br.Reset(&in)
	defer p.br.Reset(nil)
	var code int
	for interim := 0; ; interim++ {
		headStart := in.n - p.br.Buffered()
		line, err := p.br.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !long {
			return false, ioReason("read", err)
		}
		var ok bool
		if code, ok = parseStatusLine(line); !ok {
			return false, "bad response: malformed status line"
		}
		http11 := bytes.HasPrefix(line, []byte("HTTP/1.1 "))
		if long {
			// A long reason phrase: the code is in the line's start, and
			// the data plane takes such a line within its 16 KiB head
			// (found by review: the probe failed a working backend).
			if err := skipLine(p.br); err != nil {
				return false, ioReason("read", err)
			}
		}
		// The rest of the head is read too, not its body: a head cut off
		// by a close is an incomplete answer, which the data plane
		// answers with 502 (found by review: it passed the probe).
		var facts headFacts
		if err := readFields(p.br, &facts); errors.Is(err, errBadField) {
			return false, err.Error()
		} else if err != nil {
			return false, ioReason("read", err)
		}
		final := code < 100 || code > 199 || code == 101
		if bad := facts.refusal(in.n-p.br.Buffered()-headStart, final, http11); bad != "" {
			return false, bad
		}
		// An interim answer (103 Early Hints, 100) comes before the final
		// one, as HTTP clients skip it: counted as the status, it marked
		// a working backend down (found by review).
		if final {
			break
		}
		if interim == maxInterimAnswers {
			// Never final, whatever expect_status holds (found by
			// fuzzing: the answer after the bound was taken as final, and
			// a 100 passed an expect_status of 100-599).
			return false, "bad response: too many interim answers"
		}
	}
	for _, r := range p.expect {
		if r.Contains(code) {
			return true, "status " + strconv.Itoa(code)
		}
	}
	return false, "status " + strconv.Itoa(code)
}

// maxInterimAnswers bounds the interim answers a probe reads past, as
// the data plane bounds them (proxy's maxInterim): a backend the data
// plane serves is not failed for its 1xx answers.
const maxInterimAnswers = 100

// skipLine reads past the rest of a line longer than br's buffer.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// errBadField is a head line that is not a field line (RFC 9112 §5: a
// token, then a colon): the data plane refuses such a head with 502, so
// the probe fails it too (found by fuzzing: "X" alone passed).
var errBadField = errors.New("bad response: malformed header line")

// maxHeadBytes is the longest head the data plane reads (proxy's
// upstream read buffer): a longer one gets 502 there.
const maxHeadBytes = 16 << 10

// maxConnectionNames is the most names the data plane takes in a
// response's Connection fields (proxy's maxHopNames).
const maxConnectionNames = 32

// headFacts is what the data plane's checks of a response head need to
// know of it, gathered as the probe reads past its fields: the probe
// fails a head the data plane answers with 502, or a backend whose every
// answer gets 502 stayed in rotation (found by review: a head over 16 KiB,
// as large cookies make, two Content-Lengths that differ, a
// Transfer-Encoding other than chunked or in an HTTP/1.0 answer, more than
// 32 Connection names).
type headFacts struct {
	length           []byte // the first Content-Length's value
	lengthConflict   bool
	transferEncoding bool
	otherEncoding    bool // a Transfer-Encoding other than "chunked"
	connectionNames  int
	lengthSeen       bool
}

// field notes one complete field line.
func (f *headFacts) field(line []byte) {
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return
	}
	name = bytes.TrimRight(name, " ")
	value = bytes.Trim(value, " \t\r\n")
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		if f.lengthSeen && !bytes.Equal(value, f.length) {
			f.lengthConflict = true
		}
		if !f.lengthSeen {
			f.length, f.lengthSeen = append([]byte(nil), value...), true
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		f.transferEncoding = true
		f.otherEncoding = f.otherEncoding || !bytes.EqualFold(value, []byte("chunked"))
	case bytes.EqualFold(name, []byte("Connection")):
		for v := range bytes.SplitSeq(value, []byte{','}) {
			if len(bytes.TrimSpace(v)) > 0 {
				f.connectionNames++
			}
		}
	}
}

// refusal is why the data plane would refuse a head of size bytes with
// these facts ("" if it would not); final says it is the final answer's,
// http11 that its version is HTTP/1.1.
func (f *headFacts) refusal(size int, final, http11 bool) string {
	switch {
	case size > maxHeadBytes:
		return "bad response: head over 16 KiB"
	case !final:
		return ""
	case f.transferEncoding && !http11:
		return "bad response: Transfer-Encoding in an answer that is not HTTP/1.1"
	case f.otherEncoding:
		return "bad response: a Transfer-Encoding other than chunked"
	case f.lengthConflict:
		return "bad response: Content-Lengths that differ"
	case f.connectionNames > maxConnectionNames:
		return "bad response: more than 32 Connection names"
	}
	return ""
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// skipHead reads past the fields of a head, through its empty line, and
// checks each field's name.
func skipHead(br *bufio.Reader) error { return readFields(br, nil) }

// readFields is skipHead that also gathers facts, when not nil, from
// each complete field line.
func readFields(br *bufio.Reader, facts *headFacts) error {
	start, inName, nameLen := true, false, 0
	for {
		line, err := br.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull) // read on to the line's end
		if err != nil && !long {
			return err
		}
		if start {
			if !long && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
				return nil
			}
			// A line folded onto the field above it (obs-fold) has no
			// name of its own; the data plane takes it as part of that
			// field's value.
			inName, nameLen = line[0] != ' ' && line[0] != '\t', 0
			if facts != nil && inName && !long {
				facts.field(line)
			}
		}
		if inName {
			// Spaces before the colon are taken, as the data plane's
			// parser takes them (RFC 9112 §5.1 has a proxy remove them).
			name, _, found := bytes.Cut(line, []byte{':'})
			name = bytes.TrimRight(name, " ")
			nameLen += len(name)
			if !isToken(name) || found && nameLen == 0 || !found && !long {
				return errBadField
			}
			inName = !found
		}
		start = !long
	}
}

// isToken reports whether every byte of b is a token character (RFC 9110
// §5.6.2); an empty b is one.
func isToken(b []byte) bool {
	for _, c := range b {
		if !config.TokenChar(c) {
			return false
		}
	}
	return true
}

// parseStatusLine returns the code of an HTTP/1.x status line such as
// "HTTP/1.1 200 OK\r\n".
func parseStatusLine(line []byte) (code int, ok bool) {
	rest, found := strings.CutPrefix(string(line), "HTTP/1.")
	if !found || len(rest) < 5 || rest[0] < '0' || rest[0] > '9' || rest[1] != ' ' {
		return 0, false
	}
	digits := rest[2:5]
	for i := 0; i < 3; i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	if len(rest) > 5 && rest[5] != ' ' && rest[5] != '\r' && rest[5] != '\n' {
		return 0, false
	}
	code = int(digits[0]-'0')*100 + int(digits[1]-'0')*10 + int(digits[2]-'0')
	if code < 100 {
		return 0, false
	}
	return code, true
}

// connectReason names a dial failure: "connect: connection refused",
// "connect: timeout", ...
func connectReason(err error) string {
	if isTimeout(err) {
		return "connect: timeout"
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return "connect: " + se.Err.Error()
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "connect: " + de.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return "connect: " + oe.Err.Error()
	}
	return "connect: " + err.Error()
}

// ioReason names a failure after connecting: "timeout", "read: connection
// closed", "read: connection reset by peer", ...
func ioReason(op string, err error) string {
	if isTimeout(err) {
		return "timeout"
	}
	if errors.Is(err, io.EOF) {
		return op + ": connection closed"
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return op + ": " + se.Err.Error()
	}
	return op + ": " + err.Error()
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
