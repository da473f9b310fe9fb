package netconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Client timeouts of the property test's listener, and how long a client
// stalls to pass them (with room for a loaded machine).
const (
	r23Read  = time.Second
	r23Write = 2 * time.Second
	r23Idle  = time.Second
	r23Stall = 1700 * time.Millisecond
)

// r23Loan is an answer's body lent to the connection (LendToAnswer): once
// given back, it is scribbled over, so that a loan given back before the
// server passed its answer on shows in what the client reads.
type r23Loan struct {
	buf   []byte
	given atomic.Int32
	stats *r23Stats
}

func (l *r23Loan) GiveBack() {
	if l.given.Add(1) != 1 {
		l.stats.doubleGiven.Add(1)
	}
	for i := range l.buf {
		l.buf[i] = '#'
	}
	l.stats.given.Add(1)
}

type r23Stats struct {
	lent, given, doubleGiven atomic.Int64
}

// r23Body is the body of the answer to request id: n bytes that name it.
func r23Body(id, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte('a' + (id*7+j)%26)
	}
	return b
}

// r23Server serves fasthttp as sluice's front server does (proxy/front.go:
// no server timeouts, the listener's client timeouts, an ExpectHandler
// that calls ExpectBody, an ErrorHandler that lingers) with a handler
// that uses the Conn as proxy.Handle does (LendToAnswer, HoldNextWrite,
// DrainOnClose, AwaitNextRequest).
type r23Server struct {
	nl    *Listener
	srv   *fasthttp.Server
	done  chan error
	stats r23Stats
}

func r23Serve(t *testing.T) *r23Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &r23Server{nl: NewListener(ln), done: make(chan error, 1)}
	s.nl.ReadTimeout, s.nl.WriteTimeout, s.nl.IdleTimeout = r23Read, r23Write, r23Idle
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          r23ErrorHandler,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		ReadBufferSize:        8 << 10,
		WriteBufferSize:       ServerWriteBufferSize,
		MaxRequestBodySize:    1 << 20,
		CloseOnShutdown:       true,
		MaxIdleWorkerDuration: 50 * time.Millisecond, // its cleaner stops soon after Shutdown
		Logger:                r23Quiet{},
		ExpectHandler: func(ctx *fasthttp.RequestCtx) int {
			ctx.Response.Header.Set("X-Id", string(ctx.Request.Header.Peek("X-Id")))
			if len(ctx.Request.Header.Peek("X-Refuse")) > 0 {
				ctx.Response.SetBodyString("refused\n")
				ctx.Conn().(*Conn).LingerOnClose()
				return fasthttp.StatusExpectationFailed
			}
			ctx.Conn().(*Conn).ExpectBody()
			return fasthttp.StatusContinue
		},
		DisablePreParseMultipartForm: true,
	}
	go func() { s.done <- s.srv.Serve(s.nl) }()
	return s
}

type r23Quiet struct{}

func (r23Quiet) Printf(string, ...any) {}

// r23ErrorHandler is proxy.ServerErrorHandler's part that concerns the
// connection: the close lingers, a timeout is a 408.
func r23ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	c := ctx.Conn().(*Conn)
	c.LingerOnClose()
	code := fasthttp.StatusBadRequest
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || c.ReadTimedOut() {
		code = fasthttp.StatusRequestTimeout
	}
	// (Not ctx.Error: its reset would bring back the Date header, whose
	// refresh goroutine outlives the test, for goleak.)
	ctx.SetStatusCode(code)
	ctx.SetBodyString(strconv.Itoa(code) + " error\n")
	if c.HeadRequest() {
		ctx.Response.SkipBody = true
	}
}

func (s *r23Server) handle(ctx *fasthttp.RequestCtx) {
	c := ctx.Conn().(*Conn)
	id, _ := strconv.Atoi(string(ctx.Request.Header.Peek("X-Id")))
	n := ctx.QueryArgs().GetUintOrZero("n")
	body := ctx.Request.Body()
	ctx.Response.Header.Set("X-Id", strconv.Itoa(id))
	ctx.Response.Header.Set("X-Sum", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 16))
	ctx.Response.Header.Set("X-Len", strconv.Itoa(len(body)))
	if ctx.QueryArgs().Has("close") {
		ctx.SetConnectionClose()
	}
	var spliced *r23Pipe
	if ctx.QueryArgs().Has("splice") && n > 0 && !ctx.IsHead() {
		// As proxy.Handle splices a body: the head held, the body from a
		// pipe (WriteFromPipe), the pipe lent to the answer.
		spliced = r23NewPipe(r23Body(id, n))
		if spliced == nil {
			ctx.Error("pipe", 500)
			return
		}
		ctx.Response.SetBodyStream(spliced, n)
		c.LendToAnswer(spliced)
		spliced.conn = c
		ctx.Response.ImmediateHeaderFlush = true
		c.HoldNextWrite()
	} else {
		loan := &r23Loan{buf: r23Body(id, n), stats: &s.stats}
		ctx.Response.SetBodyRaw(loan.buf)
		s.stats.lent.Add(1)
		c.LendToAnswer(loan)
		if n >= ServerWriteBufferSize && !ctx.IsHead() {
			c.HoldNextWrite() // proxy's holdLongResponse
		}
	}
	if ctx.Request.Header.ConnectionClose() || ctx.Response.ConnectionClose() {
		c.DrainOnClose()
	}
	keep := ctx.Request.Header.IsHTTP11() && !ctx.Request.Header.ConnectionClose() &&
		!ctx.Response.ConnectionClose() && len(body) <= 128<<10 && n >= ServerWriteBufferSize && n <= 128<<10
	if spliced != nil {
		spliced.keep, keep = keep, false
	}
	c.AwaitNextRequest(keep)
}

// r23Pipe is a spliced answer's body (proxy's bodyPipe): a pipe holding
// it, written with WriteFromPipe when armed.
type r23Pipe struct {
	r, w   int
	n      int
	conn   *Conn
	keep   bool
	closed bool
}

func r23NewPipe(body []byte) *r23Pipe {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil
	}
	p := &r23Pipe{r: fds[0], w: fds[1], n: len(body)}
	for k := 0; k < len(body); {
		m, err := syscall.Write(p.w, body[k:])
		if err != nil {
			p.GiveBack()
			return nil
		}
		k += m
	}
	return p
}

func (p *r23Pipe) GiveBack() {
	if !p.closed {
		p.closed = true
		syscall.Close(p.r)
		syscall.Close(p.w)
	}
}

func (p *r23Pipe) SupportsBodyWriteTo() bool { return true }

func (p *r23Pipe) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k, err := syscall.Read(p.r, b[:min(len(b), p.n)])
	if err != nil || k <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p.n -= k
	return k, nil
}

func (p *r23Pipe) WriteTo(w io.Writer) (int64, error) {
	if c := p.conn; c != nil {
		p.conn = nil
		n, err := c.WriteFromPipe(nil, p.r, p.n, p.keep)
		p.n = 0
		return int64(n), err
	}
	var total int64
	buf := make([]byte, 16<<10)
	for {
		k, err := p.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *r23Server) stop(t *testing.T) {
	t.Helper()
	if err := s.srv.Shutdown(); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Error("Serve did not return")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.nl.WaitLingering(ctx); err != nil {
		t.Errorf("WaitLingering: %v", err)
	}
}

// r23Req is one request of a plan.
type r23Req struct {
	id      int
	method  string
	body    []byte
	chunked bool
	expect  bool // Expect: 100-continue
	refuse  bool // ... refused (417, and the connection closes)
	close   bool // Connection: close
	respN   int
	splice  bool // the answer's body is spliced from a pipe
	wait    bool // the client waits for the answer before the next request
	raw     []byte
	headLen int
}

// r23Plan is what one client connection does.
type r23Plan struct {
	reqs []r23Req
	// stallIn is the request in which the client stops for r23Stall, after
	// stallAt of its bytes (-1: none); idleBefore the request before which
	// it waits past the idle timeout, all earlier answers read (-1: none).
	stallIn, stallAt int
	idleBefore       int
	halfClose        bool // CloseWrite once all is sent
	idleEnd          bool // wait for the idle close at the end
	maxChunk         int
	pause            time.Duration
	readMax          int
	readPause        time.Duration
}

var r23Sizes = []int{0, 1, 100, 1000, 4000, 4095, 4096, 4097, 5000, 8191, 8192, 8193, 12288, 20000, 65536, 131072, 131073, 200000}

func r23MakePlan(rng *rand.Rand, base int) r23Plan {
	p := r23Plan{stallIn: -1, idleBefore: -1}
	k := 1 + rng.Intn(6)
	for i := 0; i < k; i++ {
		r := r23Req{id: base + i, respN: r23Sizes[rng.Intn(len(r23Sizes))], wait: rng.Intn(3) == 0}
		switch rng.Intn(5) {
		case 0, 1:
			r.method = "GET"
		case 2:
			r.method = "HEAD"
		default:
			r.method = "POST"
			bn := r23Sizes[rng.Intn(len(r23Sizes))]
			if bn > 65536 {
				bn = 65536
			}
			r.body = r23Body(r.id+1000, bn)
			r.chunked = rng.Intn(3) == 0
			if bn > 0 && rng.Intn(3) == 0 {
				r.expect = true
				r.refuse = rng.Intn(5) == 0
			}
		}
		r.close = rng.Intn(8) == 0
		r.splice = rng.Intn(3) == 0
		p.reqs = append(p.reqs, r)
		if r.close || r.refuse {
			break
		}
	}
	p.maxChunk = []int{1 << 20, 1 << 20, 7, 100, 1500, 5000}[rng.Intn(6)]
	p.pause = []time.Duration{0, 0, 100 * time.Microsecond, time.Millisecond}[rng.Intn(4)]
	p.readMax = []int{1 << 16, 1 << 16, 10, 1000, 4096}[rng.Intn(5)]
	p.readPause = []time.Duration{0, 0, 20 * time.Microsecond}[rng.Intn(3)]
	for i := range p.reqs {
		// Slow reads only of short answers: a client that takes longer
		// than the idle timeout to read one answer and send the next
		// request meets the idle close, rightly.
		if p.readMax < 100 {
			p.reqs[i].respN = min(p.reqs[i].respN, 5000)
			p.readPause = 0
		}
		if p.readPause > 0 {
			p.reqs[i].respN = min(p.reqs[i].respN, 20000)
		}
		if p.reqs[i].splice {
			p.reqs[i].respN = min(p.reqs[i].respN, 60000) // a pipe's default size
		}
		p.reqs[i].raw, p.reqs[i].headLen = r23Encode(&p.reqs[i])
	}
	switch x := rng.Intn(20); {
	case x == 0 || x == 1:
		// A stall in the middle of a request (not one whose head asks
		// for a 100 Continue, not a HEAD).
		i := rng.Intn(len(p.reqs))
		if r := p.reqs[i]; !r.expect && r.method != "HEAD" {
			p.stallIn, p.stallAt = i, 1+rng.Intn(len(r.raw)-1)
			p.reqs = p.reqs[:i+1]
		}
	case x == 2 && len(p.reqs) > 1:
		p.idleBefore = 1 + rng.Intn(len(p.reqs)-1)
		p.reqs = p.reqs[:p.idleBefore]
	}
	last := p.reqs[len(p.reqs)-1]
	if p.stallIn < 0 && p.idleBefore < 0 && !last.close && !last.refuse {
		switch rng.Intn(6) {
		case 0, 1:
			p.halfClose = true
		case 2:
			p.idleEnd = true
		}
	}
	return p
}

// r23Encode is r's bytes and the length of its head.
func r23Encode(r *r23Req) ([]byte, int) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /r?n=%d", r.method, r.respN)
	if r.close {
		b.WriteString("&close=1")
	}
	if r.splice {
		b.WriteString("&splice=1")
	}
	fmt.Fprintf(&b, " HTTP/1.1\r\nHost: x\r\nX-Id: %d\r\n", r.id)
	if r.close {
		b.WriteString("Connection: close\r\n")
	}
	if r.expect {
		b.WriteString("Expect: 100-continue\r\n")
	}
	if r.refuse {
		b.WriteString("X-Refuse: 1\r\n")
	}
	if r.method == "POST" {
		if r.chunked {
			b.WriteString("Transfer-Encoding: chunked\r\n")
		} else {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.body))
		}
	}
	b.WriteString("\r\n")
	head := b.Len()
	if r.method == "POST" {
		if r.chunked {
			for rest := r.body; len(rest) > 0; {
				n := min(len(rest), 3000)
				fmt.Fprintf(&b, "%x\r\n", n)
				b.Write(rest[:n])
				b.WriteString("\r\n")
				rest = rest[n:]
			}
			b.WriteString("0\r\n\r\n")
		} else {
			b.Write(r.body)
		}
	}
	return b.Bytes(), head
}

// r23Want is one answer the model expects.
type r23Want struct {
	req    int // index in the plan
	status int
	id     int
	n      int // body length (-1: any)
	sum    string
	blen   int
	head   bool
}

// r23Expected is the model: the answers the client must get, in order,
// and what comes after the last one: "eof" (the server closes) or
// "quiet" (nothing, the connection open).
func r23Expected(p r23Plan) ([]r23Want, string) {
	var want []r23Want
	for i, r := range p.reqs {
		if r.expect && !r.refuse {
			want = append(want, r23Want{req: i, status: 100, id: -1})
		}
		if i == p.stallIn {
			want = append(want, r23Want{req: i, status: 408, id: -1, n: -1})
			return want, "eof"
		}
		if r.refuse {
			want = append(want, r23Want{req: i, status: 417, id: r.id, n: len("refused\n")})
			return want, "eof"
		}
		want = append(want, r23Want{req: i, status: 200, id: r.id, n: r.respN, head: r.method == "HEAD",
			sum: strconv.FormatUint(uint64(crc32.ChecksumIEEE(r.body)), 16), blen: len(r.body)})
		if r.close {
			return want, "eof"
		}
	}
	if p.idleBefore >= 0 || p.halfClose || p.idleEnd {
		return want, "eof"
	}
	return want, "quiet"
}

// r23SlowReader reads at most max bytes at a time, pausing before each.
type r23SlowReader struct {
	c     net.Conn
	max   int
	pause time.Duration
}

func (r *r23SlowReader) Read(p []byte) (int, error) {
	if r.pause > 0 {
		time.Sleep(r.pause)
	}
	return r.c.Read(p[:min(len(p), r.max)])
}

// r23Client is one client connection playing a plan; events carries the
// reader's progress (the index in want of each answer read).
type r23Client struct {
	t      *testing.T
	p      r23Plan
	c      *net.TCPConn
	events chan int // answers read, by index into want
	failed chan struct{}
	err    error
	want   []r23Want
	after  string
	mu     sync.Mutex
	sent   time.Time
}

func (cl *r23Client) lastSend() time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.sent
}

// read parses the answers and checks them against the model.
func (cl *r23Client) read() {
	defer close(cl.events)
	fail := func(format string, args ...any) {
		cl.err = fmt.Errorf(format, args...)
		close(cl.failed)
	}
	_ = cl.c.SetReadDeadline(time.Now().Add(8 * time.Second))
	br := bufio.NewReaderSize(&r23SlowReader{c: cl.c, max: cl.p.readMax, pause: cl.p.readPause}, 4096)
	for i, w := range cl.want {
		line, err := br.ReadString('\n')
		if err != nil {
			fail("answer %d (req %d, status %d): reading the status line: %v (got %q)", i, w.req, w.status, err, line)
			return
		}
		if !strings.HasPrefix(line, "HTTP/1.1 ") || len(line) < 12 {
			fail("answer %d: bad status line %q", i, line)
			return
		}
		status, _ := strconv.Atoi(line[9:12])
		hdr := map[string]string{}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				fail("answer %d: reading the head: %v", i, err)
				return
			}
			l = strings.TrimRight(l, "\r\n")
			if l == "" {
				break
			}
			k, v, _ := strings.Cut(l, ":")
			hdr[strings.ToLower(k)] = strings.TrimSpace(v)
		}
		if status != w.status {
			fail("answer %d (req %d): status %d, want %d (head %v)", i, w.req, status, w.status, hdr)
			return
		}
		if status == 100 {
			cl.events <- i
			continue
		}
		if w.id >= 0 && hdr["x-id"] != strconv.Itoa(w.id) {
			fail("answer %d: X-Id %q, want %d", i, hdr["x-id"], w.id)
			return
		}
		if w.sum != "" && (hdr["x-sum"] != w.sum || hdr["x-len"] != strconv.Itoa(w.blen)) {
			fail("answer %d (req %d): the server got a %s-byte body sum %s, want %d sum %s", i, w.req, hdr["x-len"], hdr["x-sum"], w.blen, w.sum)
			return
		}
		if _, ok := hdr["content-length"]; !ok && w.n == 0 {
			hdr["content-length"] = "0"
		}
		cl2, err := strconv.Atoi(hdr["content-length"])
		if err != nil || w.n >= 0 && cl2 != w.n {
			fail("answer %d: Content-Length %q, want %d", i, hdr["content-length"], w.n)
			return
		}
		if w.status == 408 || w.status == 417 {
			if hdr["connection"] != "close" {
				fail("answer %d: %d without Connection: close", i, w.status)
				return
			}
		}
		if !w.head {
			body := make([]byte, cl2)
			if _, err := io.ReadFull(br, body); err != nil {
				fail("answer %d (req %d): body: %v", i, w.req, err)
				return
			}
			if w.status == 200 {
				if exp := r23Body(w.id, w.n); !bytes.Equal(body, exp) {
					at := 0
					for at < len(body) && body[at] == exp[at] {
						at++
					}
					fail("answer %d (req %d): body differs at byte %d of %d (%q)", i, w.req, at, len(body), body[at:min(at+16, len(body))])
					return
				}
			}
		}
		cl.events <- i
	}
	// After the last answer.
	switch cl.after {
	case "eof":
		_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := br.ReadByte()
		if err == nil {
			rest, _ := br.Peek(br.Buffered())
			fail("after the last answer: got %q, want EOF", append([]byte{b}, rest...))
			return
		}
		if !errors.Is(err, io.EOF) {
			fail("after the last answer: %v, want EOF", err)
			return
		}
	case "quiet":
		_ = cl.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b, err := br.ReadByte()
		if errors.Is(err, io.EOF) && time.Since(cl.lastSend()) > r23Idle*9/10 {
			// Read too slowly: the idle timeout has passed.
			return
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			fail("after the last answer: got %q, %v; want nothing, the connection open", b, err)
			return
		}
	}
}

// waitFor waits until answer i (index into want) was read; false if the
// reader failed or ended first.
func (cl *r23Client) waitFor(i int, seen *int) bool {
	for *seen < i {
		select {
		case j, ok := <-cl.events:
			if !ok {
				return false
			}
			*seen = j
		case <-cl.failed:
			return false
		case <-time.After(8 * time.Second):
			cl.t.Errorf("waiting for answer %d: nothing for 8 s", i)
			return false
		}
	}
	return true
}

func (cl *r23Client) send(rng *rand.Rand, b []byte) bool {
	for len(b) > 0 {
		// At most about 40 writes a request: all of it comes well within
		// the read timeout.
		n := min(len(b), 1+rng.Intn(max(cl.p.maxChunk, len(b)/20)))
		if _, err := cl.c.Write(b[:n]); err != nil {
			// The server may close first only where the model says so.
			return false
		}
		b = b[n:]
		cl.mu.Lock()
		cl.sent = time.Now()
		cl.mu.Unlock()
		if cl.p.pause > 0 && rng.Intn(2) == 0 {
			time.Sleep(time.Duration(rng.Int63n(int64(cl.p.pause))))
		}
	}
	return true
}

// r23RunCase runs plan p on one connection to s and returns what went
// wrong.
func r23RunCase(t *testing.T, s *r23Server, seed int64) error {
	rng := rand.New(rand.NewSource(seed))
	p := r23MakePlan(rng, int(seed%1000)*10)
	want, after := r23Expected(p)
	c, err := net.DialTimeout("tcp", s.nl.Addr().String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	cl := &r23Client{t: t, p: p, c: c.(*net.TCPConn), events: make(chan int, len(want)+1),
		failed: make(chan struct{}), want: want, after: after}
	readDone := make(chan struct{})
	go func() { defer close(readDone); cl.read() }()
	// index in want of each request's final answer and 100.
	final := map[int]int{}
	cont := map[int]int{}
	for i, w := range want {
		if w.status == 100 {
			cont[w.req] = i
		} else {
			final[w.req] = i
		}
	}
	seen := -1
	ok := true
	for i, r := range p.reqs {
		if !ok {
			break
		}
		switch {
		case i == p.stallIn:
			cl.send(rng, r.raw[:p.stallAt]) // the stall ends the stream either way
			time.Sleep(r23Stall)
			ok = false
		case r.expect && r.wait:
			ok = cl.send(rng, r.raw[:r.headLen])
			if r.refuse {
				ok = false
				break
			}
			ok = ok && cl.waitFor(cont[i], &seen) && cl.send(rng, r.raw[r.headLen:])
		default:
			ok = cl.send(rng, r.raw)
		}
		if ok && r.wait {
			ok = cl.waitFor(final[i], &seen)
		}
	}
	if ok && p.idleBefore >= 0 {
		if cl.waitFor(len(want)-1, &seen) {
			time.Sleep(r23Stall)
		}
	}
	if ok && p.halfClose {
		_ = cl.c.CloseWrite()
	}
	<-readDone
	if cl.err != nil {
		return fmt.Errorf("seed %d: plan %s: %w", seed, r23Describe(p), cl.err)
	}
	return nil
}

func r23Describe(p r23Plan) string {
	var b strings.Builder
	for i, r := range p.reqs {
		fmt.Fprintf(&b, "[%d %s resp=%d body=%d chunked=%v expect=%v refuse=%v close=%v splice=%v wait=%v] ", i, r.method, r.respN, len(r.body), r.chunked, r.expect, r.refuse, r.close, r.splice, r.wait)
	}
	fmt.Fprintf(&b, "stallIn=%d at=%d idleBefore=%d halfClose=%v idleEnd=%v chunk=%d pause=%v read=%d/%v",
		p.stallIn, p.stallAt, p.idleBefore, p.halfClose, p.idleEnd, p.maxChunk, p.pause, p.readMax, p.readPause)
	return b.String()
}

// r23Seed is the base seed: R23NC_SEED or a fixed one. (Case k runs
// seed base*100000+k; R23NC_ONE=<that seed> runs one case alone.)
func r23Seed(t *testing.T) int64 {
	if s := os.Getenv("R23NC_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return 23
}

// TestConnProperty: random mixes of pipelined and sequential
// requests (bodies by length or chunked, Expect: 100-continue accepted or
// refused, Connection: close, split at random points, read at random
// speeds, stalls past the client timeouts, half-closes) against fasthttp
// served as sluice serves it, through the Listener's Conns. Each client
// must get every answer, whole and in order, nothing more, and the
// connection closed when and only when the model says so. Found by
// review (session 23): before headOnly needed a head the watch saw end
// well, some cases failed (R23NC_SEED=7, and the default seed's case
// 2300028 under -race: a 408, or an answer an idle timeout late), which
// TestHeadOnlyAfterBodyTail pins deterministically; with it fixed, 30
// seeds pass.
func TestConnProperty(t *testing.T) {
	cases := 120
	if s := os.Getenv("R23NC_CASES"); s != "" {
		cases, _ = strconv.Atoi(s)
	}
	base := r23Seed(t)
	s := r23Serve(t)
	if one := os.Getenv("R23NC_ONE"); one != "" {
		seed, _ := strconv.ParseInt(one, 10, 64)
		err := r23RunCase(t, s, seed)
		s.stop(t)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	const workers = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	next := atomic.Int64{}
	deadline := time.Now().Add(40 * time.Second)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= int64(cases) || time.Now().After(deadline) {
					return
				}
				if err := r23RunCase(t, s, base*100000+k); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	s.stop(t)
	for i, err := range errs {
		if i == 10 {
			t.Errorf("... and %d more", len(errs)-10)
			break
		}
		t.Error(err)
	}
	if n := s.stats.doubleGiven.Load(); n > 0 {
		t.Errorf("%d loans given back twice", n)
	}
	t.Logf("cases run %d, lent %d, given back %d", min(next.Load(), int64(cases)), s.stats.lent.Load(), s.stats.given.Load())
}
