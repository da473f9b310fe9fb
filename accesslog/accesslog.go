// Package accesslog writes one JSON object per proxied request without ever
// making the request wait for the disk.
//
// The request path takes an Entry (Acquire), copies what it needs into it
// and hands it over (Submit), which is a non-blocking send into a bounded
// queue. One writer goroutine, owned by the Logger and stopped by Close,
// encodes entries into a buffered writer. When the queue is full — the disk
// is slower than the traffic — the entry is dropped and counted, so a slow
// disk costs log lines, never latency.
package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/config"
)

const (
	// queueSize bounds the lines waiting for the writer: about a second
	// of a busy proxy's traffic, a few MiB at most.
	queueSize = 4096
	// flushEvery bounds how long a written line may sit in the buffer.
	// Flushing on a timer rather than whenever the queue runs empty keeps
	// it to a few write calls a second at any request rate.
	flushEvery = 100 * time.Millisecond
	bufferSize = 64 << 10
	// pipeBufferSize is the buffer for an output that is not a regular
	// file (a pipe, a FIFO, a terminal): PIPE_BUF, the most one write to a
	// pipe puts in at once. Writes are whole lines (write), so with
	// -workers sharing a pipe no line is spliced with another worker's
	// (found by review: 64 KiB writes interleaved page by page).
	pipeBufferSize = 4096
	// maxKeep is the largest field buffer an idle entry keeps, so that one
	// huge path does not stay pinned in every pooled entry.
	maxKeep = 1 << 10
	// stuckAfter bounds Close and Reopen: a writer blocked that long in
	// one write (a stalled pipe, a hung network mount) is given up on.
	stuckAfter = 10 * time.Second
)

// ErrClosed is returned by Reopen after Close.
var ErrClosed = errors.New("accesslog: logger closed")

// Entry is one request's line. Byte-slice fields are owned by the entry:
// fill them with append (e.Path = append(e.Path, ctx.Path()...)), never by
// assigning fasthttp's buffers, which are reused once the handler returns.
// String fields must be strings that never change, such as the names and
// addresses in the published snapshot.
type Entry struct {
	Time             time.Time      // when the request started; written in UTC
	Remote           netip.AddrPort // the client; IPv4-mapped addresses are written as IPv4
	Method           []byte
	Host             []byte
	Path             []byte
	Status           int
	BytesIn          int // request body bytes
	BytesOut         int // response body bytes
	Duration         time.Duration
	UpstreamAddr     string // empty when no backend was tried
	UpstreamDuration time.Duration
	Attempts         int    // upstream exchanges tried, retries included
	UpstreamError    string // why the last one failed; empty when it answered
	Route            string
	Pool             string
	RequestID        []byte
}

// reset empties e for reuse, keeping its buffers unless they grew large.
func (e *Entry) reset() {
	*e = Entry{
		Method:    keep(e.Method),
		Host:      keep(e.Host),
		Path:      keep(e.Path),
		RequestID: keep(e.RequestID),
	}
}

func keep(b []byte) []byte {
	if cap(b) > maxKeep {
		return nil
	}
	return b[:0]
}

// Logger is the access log. Its methods are safe for concurrent use.
type Logger struct {
	// all and threshold decide sampling: a request is logged when all is
	// set or its random number is below threshold.
	all       bool
	threshold uint64
	dropped   func()

	queue chan *Entry
	// free recycles entries. A channel rather than a sync.Pool: the
	// population settles at the queue size plus the requests in flight
	// and is never emptied by a GC, so steady state allocates nothing.
	free   chan *Entry
	closed atomic.Bool
	reopen chan chan error
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // set by the writer before done is closed
	// owned is the file the writer writes to, for Close to close from
	// outside when the writer is stuck in a write to it (a pipe or FIFO
	// write then returns at once). nil for stdout, which is not ours.
	owned atomic.Pointer[os.File]

	// Owned by the writer goroutine.
	path    string    // "" for stdout
	file    *os.File  // nil for stdout
	out     io.Writer // file or stdout, under w
	w       *bufio.Writer
	buf     []byte
	pending int // lines in w not yet flushed, counted as dropped if a write fails
}

// New returns the access log cfg describes, writing to stdout when
// cfg.Path is "stdout" and appending to the file otherwise. dropped, if
// not nil, is called once per line lost (queue full or write failed); it
// is called on the request path, so it must be cheap (a counter).
// A disabled cfg gives a Logger that samples nothing and starts nothing.
// Close stops the writer goroutine.
func New(cfg config.AccessLog, stdout io.Writer, dropped func()) (*Logger, error) {
	if dropped == nil {
		dropped = func() {}
	}
	l := &Logger{dropped: dropped}
	if !cfg.Enabled {
		return l, nil
	}
	switch {
	case cfg.Sample >= 1:
		l.all = true
	case cfg.Sample > 0:
		// A uniform rnd is below Sample·2^64 with probability Sample;
		// Sample < 1 here, so the product fits. NaN samples nothing.
		l.threshold = uint64(math.Ldexp(cfg.Sample, 64))
	}
	out := stdout
	if cfg.Path == "stdout" && stdout == nil {
		return nil, errors.New("access log: path is stdout but no writer was given")
	}
	if cfg.Path != "stdout" {
		f, err := openFile(cfg.Path)
		if err != nil {
			return nil, err
		}
		l.path, l.file, out = cfg.Path, f, f
		l.owned.Store(f)
	}
	l.queue = make(chan *Entry, queueSize)
	l.free = make(chan *Entry, queueSize+256)
	l.reopen = make(chan chan error)
	l.quit = make(chan struct{})
	l.done = make(chan struct{})
	l.out = out
	l.w = bufio.NewWriterSize(out, bufferFor(out))
	l.buf = make([]byte, 0, 512)
	go l.run()
	return l, nil
}

// bufferFor is the write buffer's size for out: pipeBufferSize unless out
// is a regular file (or not a file at all).
func bufferFor(out io.Writer) int {
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
			return pipeBufferSize
		}
	}
	return bufferSize
}

// Check opens, and closes again, the file cfg's access log writes to, if
// enabled and not stdout, as New will: sluice -check refuses a config
// whose log cannot be opened, as nginx -t does (found by review: -check
// passed a log in a missing directory, which the start then refused). A
// missing file is created, as New would create it.
func Check(cfg config.AccessLog) error {
	if !cfg.Enabled || cfg.Path == "stdout" {
		return nil
	}
	f, err := openFile(cfg.Path)
	if err != nil {
		return err
	}
	return f.Close()
}

func openFile(path string) (*os.File, error) {
	// 0640: access logs hold client addresses. O_NONBLOCK: opening a FIFO
	// nobody reads fails (ENXIO) instead of blocking the caller (a reload,
	// SIGUSR1) forever; on a regular file it changes nothing, and Go's
	// poller waits out a full pipe.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o640)
	if errors.Is(err, syscall.ENXIO) {
		return nil, fmt.Errorf("%s: a FIFO with no reader: %w", path, err)
	}
	if err != nil {
		return nil, err // (its callers say it is the access log's)
	}
	return f, nil
}

// Sampled reports whether a request whose random number is rnd should be
// logged. The caller supplies the randomness (math/rand/v2's Uint64 on the
// request path), so the package keeps no random state and tests are
// deterministic.
func (l *Logger) Sampled(rnd uint64) bool {
	if l == nil || l.queue == nil {
		return false
	}
	return l.all || rnd < l.threshold
}

// Acquire returns an empty entry to fill and Submit.
func (l *Logger) Acquire() *Entry {
	if l == nil {
		return &Entry{}
	}
	select {
	case e := <-l.free:
		return e
	default:
		return &Entry{}
	}
}

// Submit queues e for writing and gives up ownership of it: the caller must
// not touch e afterwards. It never blocks; when the queue is full the line
// is dropped and counted.
func (l *Logger) Submit(e *Entry) {
	if l == nil {
		return
	}
	if l.queue == nil || l.closed.Load() {
		l.recycle(e)
		if l.queue != nil {
			l.dropped()
		}
		return
	}
	select {
	case l.queue <- e:
	default:
		l.recycle(e)
		l.dropped()
	}
}

func (l *Logger) recycle(e *Entry) {
	e.reset()
	select {
	case l.free <- e:
	default: // the free list is full: let the GC have it
	}
}

// Reopen makes the writer finish the lines already queued, flush, and
// reopen the file at the configured path, so that after logrotate renamed
// the old file the log goes on in a new one (SIGUSR1). For stdout it does
// nothing. If the file cannot be opened, the old one stays in use and the
// error is returned. It waits at most 10 s for a busy writer (see
// ReopenContext).
func (l *Logger) Reopen() error {
	ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
	defer cancel()
	return l.ReopenContext(ctx)
}

// ReopenContext is Reopen bounded by ctx: if the writer does not get to
// it (stuck in a write) or finish it in time, it returns an error, and
// the reopen happens later or not at all.
func (l *Logger) ReopenContext(ctx context.Context) error {
	if l == nil || l.queue == nil || l.path == "" {
		return nil
	}
	reply := make(chan error, 1) // the writer never blocks on it
	select {
	case l.reopen <- reply:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("access log reopen: writer busy: %w", ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("access log reopen: not finished: %w", ctx.Err())
	}
}

// Close writes every queued line, flushes, closes the file and stops the
// writer goroutine. It returns the first write error the writer met, if
// any. Lines submitted after Close are dropped; stop serving requests
// before calling it, since a line submitted while Close runs may be lost
// without being counted. It waits at most 10 s for a stuck writer (see
// CloseContext).
func (l *Logger) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), stuckAfter)
	defer cancel()
	return l.CloseContext(ctx)
}

// CloseContext is Close bounded by ctx. If the writer is still stuck in a
// write when ctx ends, the file is closed under it (which ends a write to
// a pipe or FIFO) and an error is returned; the queued lines are lost.
// A write to stdout cannot be ended that way: the writer goroutine then
// stays until the write returns.
func (l *Logger) CloseContext(ctx context.Context) error {
	if l == nil || l.queue == nil {
		return nil
	}
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.quit)
	})
	select {
	case <-l.done:
		return l.err
	case <-ctx.Done():
	}
	if f := l.owned.Load(); f != nil {
		_ = f.Close()
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
	}
	return fmt.Errorf("access log: writer stuck, lines lost: %w", ctx.Err())
}

// run is the writer goroutine.
func (l *Logger) run() {
	defer close(l.done)
	// The timer runs only while unflushed lines wait, so an idle proxy
	// has no wake-ups.
	t := time.NewTimer(flushEvery)
	t.Stop()
	armed := false
	for {
		select {
		case e := <-l.queue:
			l.write(e)
			if !armed {
				t.Reset(flushEvery)
				armed = true
			}
		case <-t.C:
			armed = false
			l.flush()
		case reply := <-l.reopen:
			reply <- l.reopenFile()
		case <-l.quit:
			t.Stop()
			for drained := false; !drained; {
				select {
				case e := <-l.queue:
					l.write(e)
				default:
					drained = true
				}
			}
			l.flush()
			if l.file != nil {
				l.fail(l.file.Close())
			}
			return
		}
	}
}

func (l *Logger) write(e *Entry) {
	l.buf = appendEntry(l.buf[:0], e)
	if len(l.buf) > pipeBufferSize && l.w.Size() == pipeBufferSize {
		// A write of at most PIPE_BUF bytes to a pipe is atomic; a longer
		// line could be spliced with another worker's (found by review:
		// a 5 KiB path did it).
		l.buf = fitLine(l.buf, e, pipeBufferSize)
	}
	l.recycle(e)
	if len(l.buf) > l.w.Available() && l.w.Buffered() > 0 {
		// The writer would flush by itself to make room, and pending
		// would still count the lines that flush wrote: a later failure
		// counted them dropped too (found by review).
		l.flush()
	}
	if _, err := l.w.Write(l.buf); err != nil {
		l.lost(err, 1)
		return
	}
	l.pending++
}

// fitLine re-encodes e, the entry encoded in b, with its client-given
// fields cut (the longest first, by half, each cut marked "…") until the
// line is at most limit bytes.
func fitLine(b []byte, e *Entry, limit int) []byte {
	for len(b) > limit {
		f := &e.Path
		for _, g := range []*[]byte{&e.Host, &e.RequestID, &e.Method} {
			if len(*g) > len(*f) {
				f = g
			}
		}
		if len(*f) < 8 {
			break // the rest is sluice's own, and short
		}
		n := len(*f) / 2
		for n > 0 && (*f)[n]&0xc0 == 0x80 {
			n-- // not inside a UTF-8 sequence
		}
		*f = append((*f)[:n], "…"...)
		b = appendEntry(b[:0], e)
	}
	return b
}

func (l *Logger) flush() {
	if err := l.w.Flush(); err != nil {
		l.lost(err, 0)
		return
	}
	l.pending = 0
}

// lost handles a failed write: the buffered lines (and the one being
// written, if any) are gone, and a bufio.Writer stays failed forever, so
// count them and start over on the same writer in case the error passes
// (a full disk gets space back).
func (l *Logger) lost(err error, current int) {
	l.fail(err)
	for range l.pending + current {
		l.dropped()
	}
	l.pending = 0
	l.w.Reset(l.out)
}

func (l *Logger) fail(err error) {
	if err != nil && l.err == nil {
		l.err = err
	}
}

func (l *Logger) reopenFile() error {
	// Lines submitted before Reopen was called belong to the old file.
	// Only this goroutine receives, so that many are surely there.
	for n := len(l.queue); n > 0; n-- {
		l.write(<-l.queue)
	}
	l.flush()
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	if err := l.file.Close(); err != nil {
		l.fail(err)
	}
	l.file, l.out = f, f
	l.owned.Store(f)
	if size := bufferFor(f); size != l.w.Size() {
		l.w = bufio.NewWriterSize(f, size)
	} else {
		l.w.Reset(f)
	}
	return nil
}
