package proxy

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"sluice/netconn"
)

// Long response bodies are moved with splice(2): from the upstream socket
// into a pipe while the exchange reads the response (the body is still
// taken whole before the answer starts: retries, timeouts and metrics see
// the same exchange), and from the pipe to the client's socket when the
// answer is written. The proxy then copies only the part of the body
// that came with the head, not the whole body in and out again.

// spliceMinBody is the shortest body spliced: below it the two extra
// system calls a spliced answer makes (the head apart from the body, the
// pipe's read) cost more than the copies saved.
const spliceMinBody = 32 << 10

// pipeSize is the capacity asked of each pipe (F_SETPIPE_SZ) for bodies
// up to it: 32 slots, one page fragment each (16 by default).
// bigPipeSize is the capacity of the pipes for longer bodies, up to it:
// the kernel's largest for a process that is not privileged
// (fs.pipe-max-size). A longer body is read into memory.
const (
	pipeSize    = keptBodyLimit
	bigPipeSize = 1 << 20
)

// maxBigPipes bounds the big pipes open at once: each may hold 256 pages,
// and fs.pipe-user-pages-soft allows a user 16384 by default.
const maxBigPipes = 32

// maxPipes bounds the pipes open at once (two descriptors each), so that
// bodies in flight never take the descriptors accept and dials need: at
// most 1024 pipes, and at most an eighth of the process's descriptor
// limit in descriptors (RLIMIT_NOFILE, which Go raises to the hard limit
// at start). Past it bodies are read into buffers.
func maxPipes() int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int64(min(1024, lim.Cur/16))
}

// splitPipes shares a budget of pipes (maxPipes) between the pools: big
// pipes take at most half of it, and maxBigPipes.
func splitPipes(budget int64) (small, big int64) {
	big = min(maxBigPipes, budget/2)
	return budget - big, big
}

// pipePool pools the pipes bodies are spliced through. A pipe is a pair
// of descriptors, which the garbage collector does not see: a pipe the
// pool drops, or one lent to a connection closed before giving it back,
// is closed when collected (runtime.AddCleanup), and open counts them.
type pipePool struct {
	pool sync.Pool
	open atomic.Int64
	// size is the pipes' capacity (0: pipeSize); max bounds open
	// (maxPipes; 0, in tests only: no bound).
	size int
	max  atomic.Int64
	// off is set once the system refused to splice from a socket
	// (netconn.ErrSpliceUnsupported): bodies are read into buffers.
	off atomic.Bool
}

// pipeFds are a pipe's descriptors, and the count to take it out of.
type pipeFds struct {
	r, w int
	open *atomic.Int64
}

func (f pipeFds) close() {
	_ = syscall.Close(f.r)
	_ = syscall.Close(f.w)
	f.open.Add(-1)
}

// get returns an empty pipe, nil when none can be had.
func (pp *pipePool) get() *bodyPipe {
	if p, ok := pp.pool.Get().(*bodyPipe); ok {
		return p
	}
	if max := pp.max.Load(); pp.open.Add(1) > max && max > 0 {
		pp.open.Add(-1)
		return nil
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		pp.open.Add(-1)
		return nil
	}
	f := pipeFds{r: fds[0], w: fds[1], open: &pp.open}
	size := pp.size
	if size == 0 {
		size = pipeSize
	}
	// A refusal leaves the pipe too small to be worth it: the user's
	// pipes hold all the pages fs.pipe-user-pages-soft allows (16384 by
	// default, 512 pipes of 128 KiB, for all the user's processes; root
	// is not held to it). The pipes open now are the bound from here on,
	// so that later bodies do not pay for the refusal again (none open:
	// splicing off).
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(f.w), syscall.F_SETPIPE_SZ, uintptr(size)); e != 0 {
		f.close()
		if n := pp.open.Load(); n > 0 {
			pp.max.Store(n)
		} else {
			pp.off.Store(true)
		}
		return nil
	}
	p := &bodyPipe{fds: f, pool: pp}
	p.cleanup = runtime.AddCleanup(p, pipeFds.close, f)
	return p
}

// bodyPipe is a pipe a response body passes through, lent to the answer
// like a bodyBuffer. prefix is the part of the body that came with the
// head (in pfx); inPipe is how many bytes the pipe holds.
type bodyPipe struct {
	fds     pipeFds
	inPipe  int
	prefix  []byte
	pfx     *bodyBuffer
	pool    *pipePool
	cleanup runtime.Cleanup
	// conn is the client connection that writes the answer, set when
	// the server is about to write it (armed): WriteTo then splices;
	// keep says the answer keeps the connection open.
	conn *netconn.Conn
	keep bool
	// closed says the pipe was closed after a failed write (abandon):
	// the connection still holds it, lent, and may give it back.
	closed bool
}

// GiveBack returns p to its pool, empty; a pipe that still holds bytes
// (an answer not written whole) is closed.
func (p *bodyPipe) GiveBack() {
	if p.closed {
		return
	}
	if p.pfx != nil {
		p.pfx.GiveBack()
		p.pfx = nil
	}
	p.prefix, p.conn, p.keep = nil, nil, false
	if p.inPipe != 0 {
		p.cleanup.Stop()
		p.fds.close()
		return
	}
	p.pool.pool.Put(p)
}

// abandon closes p, and the rest of the body in it, after its write to
// the client failed: the server then closes the connection, which keeps
// what it was lent until the collector frees it, and the collector
// rarely runs here (found by review: 24 aborted downloads held 24 pipes,
// up to the pool's bound, after which nothing was spliced). It runs on
// the goroutine that wrote, after the write: nothing reads p any more.
func (p *bodyPipe) abandon() {
	if p.pfx != nil {
		p.pfx.GiveBack()
		p.pfx = nil
	}
	p.prefix = nil
	p.cleanup.Stop()
	p.fds.close()
	p.closed = true
}

// SupportsBodyWriteTo lets fasthttp write the body with WriteTo.
func (p *bodyPipe) SupportsBodyWriteTo() bool { return true }

// WriteTo writes the body to w: when armed, by splicing it to the client
// connection after the head the connection holds (w, the server's
// buffer, was flushed into that hold); otherwise by reading it.
func (p *bodyPipe) WriteTo(w io.Writer) (int64, error) {
	if c := p.conn; c != nil {
		// The connection gives p back as soon as all is written, before
		// it waits for the next request (keep): p is not touched after a
		// write that succeeded, and counts as empty during it.
		prefix, inPipe, keep := p.prefix, p.inPipe, p.keep
		p.conn, p.prefix, p.inPipe = nil, nil, 0
		n, err := c.WriteFromPipe(prefix, p.fds.r, inPipe, keep)
		if err != nil {
			p.inPipe = inPipe - max(n-len(prefix), 0)
			p.abandon()
		}
		return int64(n), err
	}
	var buf [4096]byte
	total := int64(0)
	for len(p.prefix) > 0 || p.inPipe > 0 {
		n, err := p.Read(buf[:])
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Read reads the body: the prefix, then the pipe.
func (p *bodyPipe) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	if p.inPipe == 0 {
		return 0, io.EOF
	}
	for {
		n, err := syscall.Read(p.fds.r, b[:min(len(b), p.inPipe)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.ErrUnexpectedEOF
		}
		p.inPipe -= n
		return n, nil
	}
}
