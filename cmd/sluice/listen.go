package main

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"sluice/netconn"
)

// servesOn reports whether s is bound to the socket that listening on
// addr would bind: a reload that only re-spells an address
// ("localhost:8080" for "127.0.0.1:8080") keeps the listener, as nginx
// keeps a socket whose resolved address did not change, instead of
// failing to bind the port a second time (found by review). A name is
// resolved as net.Listen resolves it, to its first IPv4 address if it
// has one; every spelling of the wildcard address is the same socket;
// anything that cannot be told gives false.
func servesOn(ctx context.Context, s *server, addr string) bool {
	if s == nil {
		return false
	}
	cur, ok := s.ln.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p != cur.Port {
		return false
	}
	bound := cur.AddrPort().Addr().Unmap()
	if host == "" {
		// ":P", "0.0.0.0:P" and "[::]:P" all bind Go's one dual-stack
		// wildcard socket, "[::]:P" (found by review).
		return bound.IsUnspecified()
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		return ip == bound || ip.IsUnspecified() && bound.IsUnspecified()
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return false
	}
	first := ips[0]
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			first = ip
			break
		}
	}
	return first.Unmap() == bound
}

// listen opens a TCP listener, with SO_REUSEPORT when asked, so that a new
// sluice process can bind the same port while the old one drains.
func listen(ctx context.Context, addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: 3 * time.Minute}
	if reusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(ctx, "tcp", addr)
}

// migrateReqPath is where Linux says whether a SO_REUSEPORT listener that
// closes hands the connections queued on it to another listener of the
// same port (net.ipv4.tcp_migrate_req, Linux 5.14+). Without it they are
// reset: a process taking over a port drops the connections that were
// queued on the old one when it stops.
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// warnNoMigrate logs a warning when the kernel (per the file at path)
// does not hand queued connections over.
func warnNoMigrate(log zerolog.Logger, path string) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn().Msg("listen_reuseport: this kernel resets the connections queued on a listener that closes (tcp_migrate_req needs Linux 5.14+); a takeover may drop a few")
	case err == nil && strings.TrimSpace(string(b)) == "0":
		log.Warn().Msg("listen_reuseport: net.ipv4.tcp_migrate_req is 0, so the connections queued on a listener that closes are reset; set it to 1 for takeovers that drop none")
	}
}

// server is one fasthttp server on one listener, served by a goroutine the
// app owns. drains says its handler answers "Connection: close" on a
// draining connection (netconn.Conn.Draining), as the proxy's does.
type server struct {
	srv    *fasthttp.Server
	ln     net.Listener
	addr   string
	done   chan struct{}
	drains bool
	// failed is set when the listener stopped on an error of its own,
	// not a close: nothing accepts on it any more.
	failed atomic.Bool
}

func startServer(srv *fasthttp.Server, ln net.Listener, log zerolog.Logger, name string) *server {
	s := &server{srv: srv, ln: ln, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil {
			s.failed.Store(true)
			log.Error().Err(err).Str("listener", name).Str("listen", s.addr).Msg("listener stopped")
		}
	}()
	return s
}

// refusals sums the client connections the front servers refused over
// limits.max_client_conns (fasthttp counts them per server), for
// sluice_downstream_connections_refused_total: the servers serving now,
// and those replaced (a listener moved), so that the sum only grows.
type refusals struct {
	mu   sync.Mutex
	gone uint64
	live map[*fasthttp.Server]struct{}
}

func (r *refusals) add(s *fasthttp.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = make(map[*fasthttp.Server]struct{})
	}
	r.live[s] = struct{}{}
}

// remove moves s's count into the total of servers gone; call it once s
// has stopped serving, when its count can no longer grow.
func (r *refusals) remove(s *fasthttp.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.live[s]; ok {
		delete(r.live, s)
		r.gone += uint64(s.GetRejectedConnectionsCount())
	}
}

func (r *refusals) total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.gone
	for s := range r.live {
		n += uint64(s.GetRejectedConnectionsCount())
	}
	return n
}

// stop stops accepting and ends the connections gracefully, until ctx
// ends. A server whose handler honours draining first has each request
// that still comes answered with "Connection: close"
// (netconn.Listener.Drain), so busy keep-alive connections end after an
// answer, and waits for that (settle). Then the connections that have
// sent nothing yet are closed (netconn.Listener.HushSilent), fasthttp's
// shutdown closes the idle connections and waits for the requests in
// flight, and stop
// waits for the serving goroutine and for the connections whose close
// lingers after an error answer (fasthttp has stopped counting those).
func (s *server) stop(ctx context.Context) error {
	nl, _ := s.ln.(*netconn.Listener)
	if nl != nil && s.drains {
		_ = nl.Drain()
		settle(ctx, nl.Open)
		// Connections that have sent nothing close once the settle is
		// over: one opened just before the stop may be about to send
		// its first request, as a keep-alive one its next.
		nl.HushSilent()
	} else if nl != nil {
		// A server that does not drain (the admin's) closes them at once.
		nl.HushSilent()
	}
	err := s.srv.ShutdownWithContext(ctx)
	// A Serve that had not yet taken the listener when the shutdown came
	// (a stop right after the start) would wait in Accept for good.
	_ = s.ln.Close()
	<-s.done
	if nl != nil {
		err = errors.Join(err, nl.WaitLingering(ctx))
	}
	return err
}

// settleQuiet is how long the open connections of a draining server must
// stay as many before the rest are taken for idle, and settleMax the
// longest settle waits in all: connections still open after it are idle
// or have a request in flight, which fasthttp's shutdown waits for. A
// busy client gets its "Connection: close" answer within one request; one
// that pauses longer between requests risks what any idle close risks, a
// request sent just as its connection is closed (nginx closes idle
// keep-alive connections at once on a graceful stop).
const (
	settleQuiet = 250 * time.Millisecond
	settleMax   = time.Second
)

// settle waits until open reports no open connection, or a number that
// has not fallen for settleQuiet, or settleMax has passed, or half of
// what is left of ctx (the rest is for the requests in flight).
func settle(ctx context.Context, open func() int64) {
	start := time.Now()
	limit := settleMax
	if d, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(d)/2)
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last, lastFall := open(), start
	for last > 0 {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := open(); n < last {
				last, lastFall = n, now
			} else if now.Sub(lastFall) >= settleQuiet || now.Sub(start) >= limit {
				return
			}
		}
	}
}
