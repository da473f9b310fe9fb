// Package proxy is sluice's data plane: the fasthttp handler that routes
// each request, picks a backend from the published snapshot and forwards
// the request over a kept-alive upstream connection (upClient). The request
// path takes no lock and, in steady state, allocates nothing.
package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/accesslog"
	"sluice/balancer"
	"sluice/config"
	"sluice/health"
	"sluice/metrics"
	"sluice/netconn"
)

// Proxy serves requests from whatever snapshot was published last.
type Proxy struct {
	snap atomic.Pointer[Snapshot]
	// scratch holds reusable *scratch buffers, one per request in flight.
	scratch sync.Pool
	// upBufs pools the upstream exchanges' buffers; bodies the response
	// bodies lent to answers (bodyLoan).
	upBufs *upBufferPools
	bodies bodyPools
	// pipes pools the pipes long response bodies are spliced through
	// (splice.go).
	pipes, bigPipes pipePool
	// trips receives passive-health trips for the controller; set once
	// by NewController before serving starts.
	trips *health.Inbox
	// access is the access log, nil when off.
	access atomic.Pointer[accesslog.Logger]
	// failures logs upstream failures to the process log; set once by
	// NewController before serving starts (nil: not logged).
	failures *failureLog
}

// SetAccessLog makes l the access log of requests that finish from now on
// (nil turns it off).
func (p *Proxy) SetAccessLog(l *accesslog.Logger) { p.access.Store(l) }

// scratch is per-request working memory, pooled so that building header
// values and lower-casing the host never allocate.
type scratch struct {
	buf  []byte
	host [256]byte
	// clientHost keeps the client's Host for the access log when the
	// request goes upstream with the backend's and no X-Forwarded-Host.
	clientHost []byte
	// hints passes a backend's 103 answers to the client (see
	// clientHints); here so that passing it as an interface allocates
	// nothing.
	hints clientHints
	// loan holds the response's body when it is read into a lent buffer.
	loan bodyLoan
}

// New returns a proxy with no snapshot: it answers 503 until one is
// published.
func New() *Proxy {
	p := &Proxy{upBufs: newUpBuffers(upstreamReadBufferSize, upstreamWriteBufferSize)}
	small, big := splitPipes(maxPipes())
	p.pipes.max.Store(small)
	p.bigPipes.max.Store(big)
	p.bigPipes.size = bigPipeSize
	p.pipes.off.Store(small == 0)
	p.bigPipes.off.Store(big == 0)
	p.scratch.New = func() any {
		return &scratch{buf: make([]byte, 0, 256), loan: bodyLoan{pools: &p.bodies, pipes: &p.pipes, bigPipes: &p.bigPipes}}
	}
	return p
}

// Publish makes s the snapshot for every request that starts from now on.
func (p *Proxy) Publish(s *Snapshot) { p.snap.Store(s) }

// Current returns the published snapshot (nil before the first).
func (p *Proxy) Current() *Snapshot { return p.snap.Load() }

// Handle is the fasthttp request handler.
func (p *Proxy) Handle(ctx *fasthttp.RequestCtx) {
	s := p.snap.Load()
	if s == nil {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "503 no configuration loaded\n")
		return
	}
	// The server read the clock as the request arrived; after that a
	// request costs one clock reading per upstream attempt.
	now := ctx.Time()
	if now.IsZero() {
		now = time.Now()
	}
	m := s.metrics
	m.InFlightAdd(1)
	sc := p.scratch.Get().(*scratch)
	out := p.forward(ctx, s, sc, now)
	if sc.hints.failed {
		// A part of a 103 may have gone out before the final answer.
		ctx.SetConnectionClose()
	}
	if c, ok := ctx.Conn().(*netconn.Conn); ok {
		lent := sc.loan.buf != nil || sc.loan.pipe != nil
		if sc.loan.buf != nil {
			c.LendToAnswer(sc.loan.buf)
			sc.loan.buf = nil
		}
		if pipe := sc.loan.pipe; pipe != nil {
			sc.loan.pipe = nil
			c.LendToAnswer(pipe)
			if ctx.Response.IsBodyStream() && !ctx.IsHead() {
				// The head goes to the connection's hold as soon as
				// the server has it (ImmediateHeaderFlush), and the
				// body's WriteTo sends the two (splice.go).
				pipe.conn = c
				ctx.Response.ImmediateHeaderFlush = true
				c.HoldNextWrite()
			}
		}
		if sc.loan.manyFields || manyFields(ctx.Request.Header.RawHeaders()) {
			// fasthttp keeps a connection's parsed fields, each with
			// buffers of its own, at their largest count for as long as
			// the connection is open: one head of 8 KiB of tiny fields
			// left an idle connection holding 180 KiB, not 14 (found by
			// review). Closed, the connection gives them up.
			ctx.SetConnectionClose()
		}
		if c.Draining() {
			// A graceful stop: the connection ends after this answer,
			// which tells the client so (netconn.Listener.Drain).
			ctx.SetConnectionClose()
		}
		if ctx.Request.Header.ConnectionClose() || ctx.Response.ConnectionClose() {
			// The answer closes the connection: bytes the client sent
			// past the request would turn the close into a reset.
			c.DrainOnClose()
		}
		// An answer that keeps the connection open waits for the next
		// request inside its write (fasthttp closes after the others),
		// unless a body over keptBodyLimit is to be let go after the
		// write, or its body is lent (below): either would be held for
		// as long as the client idles. Only
		// a long answer (a body of at least the write buffer) waits: the
		// wait costs one recv(MSG_PEEK) for what came before it, which
		// a short answer's yield and read, that find the next request
		// more often, do not (same-run A/B: 6% more CPU per request with
		// 1 KiB answers, 5% less with 64 KiB; README, Performance).
		n := answerBodyLen(&ctx.Response)
		keep := ctx.Request.Header.IsHTTP11() && !ctx.Request.Header.ConnectionClose() &&
			!ctx.Response.ConnectionClose() &&
			len(ctx.Request.Body()) <= keptBodyLimit && n >= ClientWriteBufferSize && n <= keptBodyLimit
		if lent && keep {
			// A lent buffer or pipe is given back before the wait, but
			// the write that waits still holds it (its caller's body),
			// so a collection that empties the pool meanwhile lost it to
			// the idle connection, which kept it until its next request
			// (found by review: 64 idle connections held 4 MiB, and
			// pipes ran out). Such an answer does not wait: the next
			// read goes to the socket at once, without the yield, which
			// after a long answer seldom finds the request there.
			keep = false
			c.SkipYield()
		}
		c.AwaitNextRequest(keep)
	}
	sc.hints = clientHints{}
	m.InFlightAdd(-1)

	end := out.end
	if end.IsZero() {
		end = time.Now()
	}
	status := ctx.Response.StatusCode()
	r := out.route
	switch {
	case r == nil:
		s.noRoute.Inc(status)
	case out.counter != nil:
		out.counter.Inc(status)
	default:
		r.noBackend.Inc(status)
	}
	if r != nil {
		r.series.ObserveDuration(end.Sub(now))
		r.inFlight.Add(-1)
	}
	if out.clientHeld {
		out.upstream.client.end()
	}
	m.Bytes(len(ctx.Request.Body()), bodySent(ctx))
	if al := p.access.Load(); al != nil && al.Sampled(rand.Uint64()) {
		logAccess(al, ctx, now, end, out)
	}
	p.scratch.Put(sc) // after the log: out.clientHost is in it
}

// bodySent is the length of the body the answer sends: none to a HEAD
// request, whatever body an answer sluice made itself (an error text)
// holds, as fasthttp leaves it out.
func bodySent(ctx *fasthttp.RequestCtx) int {
	if ctx.IsHead() {
		return 0
	}
	return answerBodyLen(&ctx.Response)
}

// answerBodyLen is the length of resp's body without reading a body
// stream (a spliced body) into memory, as Body would.
func answerBodyLen(resp *fasthttp.Response) int {
	if resp.IsBodyStream() {
		return max(resp.Header.ContentLength(), 0)
	}
	return len(resp.Body())
}

// outcome is what forward did, for metrics and the access log.
type outcome struct {
	route *route
	// counter counts the request for the route and the backend that
	// answered (or failed last); nil when none was tried.
	counter  *metrics.RequestCounters
	upstream *upstream
	upTime   time.Duration
	// end is when the last upstream exchange finished (zero if none).
	end time.Time
	// clientHeld says out.upstream's client still counts this request in
	// flight: Handle ends it once the request is counted.
	clientHeld bool
	// attempts counts the exchanges tried (retries included; not the
	// connections found dead before a request went out on them);
	// failure is why the last one failed, kindNone when the backend's
	// answer went to the client.
	attempts uint8
	failure  errKind
	// hostForwarded is set once the request was rewritten for the
	// upstream with X-Forwarded-Host: its Host may then be the backend's,
	// the client's is there. Without X-Forwarded-Host, hostCopied says
	// the Host sent is the backend's and clientHost (in the scratch)
	// holds the client's, empty if it sent none.
	hostForwarded bool
	hostCopied    bool
	clientHost    []byte
	// idMade says the X-Request-Id is one sluice generated; sent, that
	// an attempt's request may have reached a backend (it got past
	// connecting). The access log shows a generated id only if sent.
	idMade, sent bool
}

// forward routes the request, picks a backend and proxies to it, retrying
// where that is safe; the response (or error) is left in ctx.Response.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, s *Snapshot, sc *scratch, now time.Time) outcome {
	var out outcome
	raw := ctx.Request.Header.RawHeaders()
	found := scanRequest(raw)
	code, msg := rejected(ctx, found)
	trailers := hasTrailerNames(&ctx.Request.Header, found)
	if code == 0 && (tooManyNames(&ctx.Request.Header, found) ||
		trailers && tooManyTrailers(&ctx.Request.Header)) {
		code, msg = fasthttp.StatusBadRequest, "400 more than 32 names in Connection or Trailer\n"
	}
	if code == 0 && trailers {
		var ok bool
		if sc.buf, ok = dropTrailers(&ctx.Request.Header, raw, sc.buf); !ok {
			code, msg = fasthttp.StatusBadRequest, "400 a trailer field repeats a header field\n"
		}
	}
	if code != 0 {
		writeError(ctx, code, msg)
		if code == fasthttp.StatusMethodNotAllowed {
			// RFC 9110 §15.5.6: a 405 names the methods that are taken.
			ctx.Response.Header.Set(fasthttp.HeaderAllow, allowedMethods)
		}
		// The rest of the connection cannot be trusted to be framed as
		// the next hop would frame it; a body may be left unread
		// (HeadReceived).
		ctx.SetConnectionClose()
		LingerOnClose(ctx)
		return out
	}
	rawHost := ctx.Request.Header.Host()
	if th := targetHost(ctx.Request.Header.RequestURI()); th != nil {
		// An absolute-form target's host overrides Host (RFC 9112
		// §3.2.2), for routing and for all that follows: the Host sent
		// upstream, X-Forwarded-Host, the access log.
		ctx.Request.Header.SetHostBytes(th)
		rawHost = ctx.Request.Header.Host()
	}
	host := normalizeHost(rawHost, sc.host[:])
	r := s.routes.match(host, ctx.Path())
	if r == nil {
		writeError(ctx, fasthttp.StatusNotFound, "404 no route for this host and path\n")
		return out
	}
	out.route = r
	r.inFlight.Add(1) // Handle subtracts it once the request is counted
	pl := r.pool
	if len(pl.targets) == 0 {
		p.noBackend(ctx, pl, now)
		return out
	}

	req := &ctx.Request
	clientClose := req.Header.ConnectionClose()
	http11 := req.Header.IsHTTP11()
	// A body is read into a lent buffer only for a connection that gives
	// it back (netconn's).
	var loan *bodyLoan
	if _, ok := ctx.Conn().(*netconn.Conn); ok {
		loan = &sc.loan
	}
	var hints earlyHinter
	if hintable(ctx, http11) {
		sc.hints = clientHints{ctx: ctx, timeout: min(s.Config.Timeouts.ClientWrite, maxHintWrite)}
		hints = &sc.hints
	}
	// An HTTP/1.0 request may come without Host; the upstream then gets the
	// backend's address, as with preserve_host: false.
	backendHost := !pl.preserveHost || len(rawHost) == 0
	if backendHost && !s.forwarding.host {
		sc.clientHost = append(sc.clientHost[:0], rawHost...)
		out.hostCopied, out.clientHost = true, sc.clientHost
	}
	// The hash key is the client's: taken before prepareRequest appends
	// the peer to X-Forwarded-For or sets X-Forwarded-* and X-Request-Id
	// (hash_key: header:X-Forwarded-For lost its affinity across a CDN's
	// egress addresses; found by review).
	key := pl.requestKey(ctx, host)
	// So is the sticky cookie: removing hop-by-hop fields can reorder
	// repeated Cookie lines, and the first one's must win (RFC 6265 §5.4;
	// found by fuzzing).
	// The session's backend is kept as well as its index: a retry may
	// pick from a newer snapshot, where indexes differ (found by review:
	// a retry on another backend that took the session's index there
	// sent no new cookie).
	stuck := -1
	var stuckBackend *balancer.Backend
	if pl.sticky != nil {
		if v := cookieValue(req.Header.PeekAll("Cookie"), pl.sticky); len(v) > 0 {
			if i, ok := pl.stickyIndex[string(v)]; ok {
				stuck, stuckBackend = i, pl.targets[i].backend
			}
		}
	}
	sc.buf, out.idMade = prepareRequest(ctx, rawHost, found, s.forwarding, sc.buf)
	out.hostForwarded = s.forwarding.host

	var err error
	idx := -1
	// counters is parallel to pl.targets: the route's request counters.
	counters := r.requests
	// tried holds the backends this request has been sent to: a retry
	// goes to none of them again, as nginx's proxy_next_upstream never
	// tries a peer twice (config caps attempts at maxAttempts). By
	// identity, not index: a retry after a reload picks from the new
	// snapshot's pool.
	var tried [maxAttempts]*balancer.Backend
	var up *upstream
	for attempt := 1; ; attempt++ {
		if attempt == 1 {
			idx = stuck
			if idx < 0 {
				idx = pl.pick(key, now.UnixNano())
			}
			if idx < 0 {
				break
			}
			up = pl.targets[idx]
		} else {
			if cur := p.snap.Load(); cur != nil && cur.pools[pl.name] != pl {
				// A reload (or a DNS answer) came since the request
				// began: the retry picks from the pool as it is now,
				// backends added since included (found by review: only
				// the request's own snapshot's backends were taken, so
				// a pool whose one backend was replaced answered 502,
				// and one scaled out retried the failing backend).
				if r2 := cur.routes.named(r.name, pl.name); r2 != nil {
					pl, counters = r2.pool, r2.requests
				}
			}
			next, nextUp := p.retryTarget(pl, tried[:attempt-1], key, now.UnixNano())
			// The failed attempt before this is logged now that it is
			// known whether the request goes on (found by review: it
			// said so while no backend was left to try).
			p.logFailure(ctx, up, attempt-1, out.failure, err, out.end, next >= 0)
			if next < 0 {
				// None left: the last answer stands, counted as it was
				// (out.counter).
				out.clientHeld = true
				break
			}
			// The last attempt's client counted it in flight until now,
			// when another attempt takes over (see clientHeld).
			up.client.end()
			idx, up = next, nextUp
			pl.series.Retry()
		}
		tried[attempt-1] = up.backend
		if backendHost {
			req.Header.SetHost(up.backend.Addr)
		}
		start := now
		if attempt > 1 {
			start = time.Now()
		}
		up.backend.Begin()
		up.client.begin()
		var done time.Time
		// staleAgain allows the one more try on another connection that an
		// idempotent request gets when a reused one broke before any
		// answer (errStaleConn).
		staleAgain := true
		tryStart := start
		for try := 1; ; try++ {
			// One deadline for the whole exchange, request write included.
			// The last try takes a new connection: after a backend
			// restart every idle one is dead.
			done, err = up.client.do(req, &ctx.Response, hints, loan, tryStart, try == maxIdleRetries)
			if err == nil || try == maxIdleRetries {
				break
			}
			if staleAgain && errors.Is(err, errStaleConn) && isIdempotent(req.Header.Method()) {
				staleAgain = false
			} else if !errors.Is(err, netconn.ErrIdleClosed) && !errors.Is(err, netconn.ErrUnsolicited) {
				break
			}
			up.series.UpstreamError(metrics.KindIdle)
			// Each try has its own timeouts.response, from when the last
			// one ended (found by review: a resend after a connection
			// broke late had what the first try left).
			tryStart = done
			// The connection was closed, or sent bytes nobody asked for,
			// while idle, and nothing of the request left; or it broke as
			// the request went out, before any answer (errStaleConn, once).
			// Again on another connection to the same backend, without
			// counting a retry.
		}
		up.backend.End()
		out.counter, out.upstream, out.upTime, out.end = counters[idx], up, done.Sub(start), done
		kind := kindNone
		if err != nil {
			kind = errorKind(err)
			up.series.UpstreamError(metricKind(kind))
		}
		out.attempts, out.failure = uint8(attempt), kind
		if !notSent(kind) {
			out.sent = true
		}
		// Only what says something about the backend counts against it:
		// not sluice's own connection limit, not a malformed exchange.
		down := kind == kindConnect || kind == kindConnectTimeout || kind == kindTimeout || kind == kindReset
		if pl.ewmaWindow > 0 && (err == nil || down) {
			latency := out.upTime
			if down {
				// A backend that refused, reset or timed out scores as
				// one that took the whole response timeout: counted as
				// fast, or not at all, it would win every draw.
				latency = max(latency, up.client.response)
			}
			up.backend.ObserveLatency(done.UnixNano(), int64(latency), pl.ewmaWindow)
		}
		if down {
			// Other failures (sluice's own connection limit, a malformed
			// or too large answer) say nothing of the backend's health:
			// neither a failure nor a success, which would end a streak of
			// timeouts (found by review: a hung backend, its connections
			// all busy, was never ejected). An answer is recorded once it
			// is known to be passed on (below).
			p.recordOutcome(up, true)
		}
		if err == nil || attempt >= s.attempts || !retryable(kind, req) {
			if err != nil {
				p.logFailure(ctx, up, attempt, kind, err, done, false)
			}
			// The client's in-flight count drops once Handle has counted
			// the request: a drain that ends at 0 in flight forgets the
			// backend's series, and did so before the count landed
			// (found by review).
			out.clientHeld = true
			break
		}
		key = rand.Uint64()
	}

	switch {
	case out.upstream == nil:
		p.noBackend(ctx, pl, now)
	case err != nil:
		code, msg := classify(err)
		writeError(ctx, code, msg)
	default:
		resp := &ctx.Response
		// The upstream's wish to close its connection was honoured by
		// the upstream client already; it says nothing about the
		// downstream connection.
		resp.Header.ResetConnectionClose()
		if !bytes.Equal(resp.Header.Protocol(), strHTTP11) {
			// An intermediary sends its own version (RFC 9110 §6.2),
			// not an HTTP/1.0 backend's, which would tell an HTTP/1.1
			// client the connection closes after this answer.
			resp.Header.SetProtocol(strHTTP11)
		}
		if loan == nil || !loan.plainHead {
			// (readPlainHead left out a plain head's hop-by-hop fields.)
			if hasControl(resp.Header.StatusMessage()) {
				// fasthttp keeps control bytes (NUL too) in the reason;
				// RFC 9112 §4 allows none but tab. The standard reason
				// is sent instead (found by review).
				resp.Header.SetStatusMessage(nil)
			}
			found := scanResponse(&resp.Header)
			if bad := badResponse(resp, found); bad != "" {
				// (The connection a 101 came on was closed by the client.)
				writeError(ctx, fasthttp.StatusBadGateway, bad)
				out.failure = kindOther
				up.series.UpstreamError(metrics.KindOther)
				p.logFailure(ctx, up, int(out.attempts), kindOther, badResponseError(bad), out.end, false)
				break
			}
			// (A chunked answer's trailer was read past, never into the
			// headers: readChunked.)
			sc.buf = stripHopByHop(&resp.Header, found, sc.buf)
		}
		// Observed once the answer is known to be passed on: a refused
		// one (badResponse) is a failed attempt, not an upstream
		// duration (found by review).
		out.upstream.series.ObserveUpstream(out.upTime)
		p.recordOutcome(out.upstream, resp.StatusCode() >= 500)
		if pl.sticky != nil {
			// A backend's own cookie of the affinity cookie's name (the
			// default name, or a sluice behind sluice) would replace the
			// session's in the browser: it goes, and the session's is
			// sent (found by review: sessions flipped on every request).
			clash := len(resp.Header.PeekCookie(pl.stickyName)) > 0
			if clash {
				sc.buf = dropCookieInOrder(&resp.Header, pl.stickyName, sc.buf)
			}
			if up.backend != stuckBackend || clash {
				resp.Header.AddBytesKV(hdrSetCookie, pl.stickyCookies[idx])
			}
		}
		holdLongResponse(ctx)
	}
	// Put back what the client's connection needs; the upstream request
	// was sent as keep-alive HTTP/1.1 whatever the client spoke.
	if clientClose {
		ctx.SetConnectionClose()
	}
	if !http11 {
		req.Header.SetProtocolBytes(strHTTP10)
	}
	return out
}

// dropCookieInOrder removes h's Set-Cookie lines of cookie name and keeps
// the others in their order, which decides the value a browser keeps of a
// cookie set twice: fasthttp's DelCookie moves the last line into the
// place of the one it removes (found by review: "sid=a", then "sid=b"
// reached the client the other way round). buf is scratch; it is
// returned for reuse.
func dropCookieInOrder(h *fasthttp.ResponseHeader, name string, buf []byte) []byte {
	buf = buf[:0]
	for k, v := range h.Cookies() {
		if string(k) != name {
			// Values hold no line breaks (checked as the head is read).
			buf = append(append(buf, v...), '\n')
		}
	}
	h.DelAllCookies()
	for rest := buf; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		h.AddBytesKV(hdrSetCookie, rest[:i])
		rest = rest[i+1:]
	}
	return buf
}

// maxAttempts is the most attempts a request makes (config's bound on
// retries.attempts).
const maxAttempts = config.MaxAttempts

// retryPicks is how many times retryTarget asks the picker before it
// looks for a target itself.
const retryPicks = 4

// retryTarget picks the target of a retry and the upstream to send it
// to: the picker's choice (its weights, load and slow start) if it is a
// target this request has not tried and whose backend is still there,
// asked up to retryPicks times with fresh keys; else the least loaded
// such target; -1 when none is left (the last answer
// stands), but a pool of one retries its one backend. A target whose
// client closed because a reload replaced it (new timeouts or limits)
// is sent to through the current snapshot's upstream for the same
// backend; one whose backend left is skipped. Stepping to the next target
// after a pick of the failed one, as before, skewed retries by list
// order and undid weights, load and slow start, and remembering only the
// last target let a third attempt go back to the first (found by
// review).
func (p *Proxy) retryTarget(pl *pool, tried []*balancer.Backend, key uint64, now int64) (int, *upstream) {
	for range retryPicks {
		i := pl.pickRetry(key, now)
		if i < 0 {
			break
		}
		if !slices.Contains(tried, pl.targets[i].backend) {
			if up := p.usable(pl, i); up != nil {
				return i, up
			}
		}
		key = rand.Uint64()
	}
	if pl.picks == 0 {
		return -1, nil
	}
	// The least loaded of the rest per unit of weight, ties drawn by
	// weight (weighted reservoir sampling): drawn evenly, a target of
	// weight 1 took as many retries as one of weight 50, and raw
	// in-flight counts undid weights and slow start (found by review;
	// taking the first from a random place favoured a target after a run
	// of tried ones, found before).
	best, bestUp := -1, (*upstream)(nil)
	var bestIn, bestW, tieW uint64
	for i := range pl.picks {
		if slices.Contains(tried, pl.targets[i].backend) {
			continue
		}
		up := p.usable(pl, i)
		if up == nil {
			continue
		}
		in, w := uint64(max(up.backend.InFlight(), 0)), uint64(max(pl.built[i].Weight, 1))
		switch {
		case bestUp == nil || in*bestW < bestIn*w:
			best, bestUp, bestIn, bestW, tieW = i, up, in, w, w
		case in*bestW == bestIn*w:
			if tieW += w; rand.Uint64N(tieW) < w {
				best, bestUp, bestIn, bestW = i, up, in, w
			}
		}
	}
	if best >= 0 {
		return best, bestUp
	}
	// A pool of one retries its one backend; a request that began on a
	// sticky session's held backend (out of the picker's set) has tried
	// another already.
	if only := pl.targets[0].backend; pl.picks == 1 &&
		!slices.ContainsFunc(tried, func(b *balancer.Backend) bool { return b != only }) {
		if up := p.usable(pl, 0); up != nil {
			return 0, up
		}
	}
	return -1, nil
}

// usable is the upstream a retry to pl's target i goes to: the target's
// own while pl is the current snapshot's pool, else the current
// snapshot's upstream for the same backend (a reload replaced the client
// or kept it), or nil when the backend has left the pool or the picks
// (found by review: a removed backend still draining, and a replaced
// client still draining, took retries).
func (p *Proxy) usable(pl *pool, i int) *upstream {
	up := pl.targets[i]
	cur := p.snap.Load()
	if cur == nil || cur.pools[pl.name] == pl {
		// The request's snapshot is the current one.
		if up.client.retired.Load() {
			return nil
		}
		return up
	}
	// A reload came since: the backend as the current snapshot has it,
	// with its current client (the old one may still be draining, with
	// the old limits), or nil if the reload removed it (it may still be
	// draining too) or took it out of the picks.
	if cp := cur.pools[pl.name]; cp != nil {
		for _, t := range cp.targets[:cp.picks] {
			if t.backend == up.backend && !t.client.retired.Load() {
				return t
			}
		}
	}
	return nil
}

// badResponse says why an upstream response must not be passed on ("" if
// it may): a 101 to a request whose Upgrade sluice removed (the backend
// would then speak another protocol on a connection sluice reuses), or a
// field name that is not a token.
func badResponse(resp *fasthttp.Response, found headerSet) string {
	switch {
	case resp.StatusCode() == fasthttp.StatusSwitchingProtocols:
		return "502 upstream switched protocols unasked\n"
	case found&hBadName != 0:
		return "502 upstream sent an invalid header field name\n"
	case tooManyNames(&resp.Header, found):
		// (A response's trailer section is read past, never merged.)
		return "502 upstream named more than 32 fields in Connection\n"
	}
	return ""
}

// validHostField reports whether h may be a Host field's value: a
// uri-host and an optional port (RFC 3986 §3.2.2: unreserved,
// percent-encoded and sub-delims characters, an IP literal's brackets and
// colons), or empty. A name with an empty label ("api..example.com",
// "example.com..") is not a DNS name and would be routed as the no-host
// route; it is refused, as nginx refuses it.
func validHostField(h []byte) bool {
	for _, c := range h {
		if !hostFieldByte[c] {
			return false
		}
	}
	return !bytes.Contains(h, strDotDot)
}

var strDotDot = []byte("..")

var hostFieldByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]") {
		t[c] = true
	}
	return t
}()

// rejected returns the status and body for a request that must not be
// forwarded (0 when it may be), beyond what fasthttp's parser refuses.
func rejected(ctx *fasthttp.RequestCtx, found headerSet) (int, string) {
	h := &ctx.Request.Header
	switch {
	case bareLFEnd(h.RawHeaders()):
		// netconn's head watch catches such a head at the start of a
		// turn's first read; one pipelined behind another request or a
		// body, or with a method not in capitals, reaches here parsed,
		// the next request read from past its bare LF (found by review).
		return fasthttp.StatusBadRequest, "400 request head ends in a bare LF, not CRLF\n"
	case found.smuggled():
		// Content-Length beside chunked framing: the two ends of a proxy
		// may disagree on where this message ends (request smuggling).
		return fasthttp.StatusBadRequest, "400 both Content-Length and Transfer-Encoding\n"
	case found&hBadTE != 0:
		return fasthttp.StatusBadRequest, "400 Transfer-Encoding other than chunked\n"
	case found&hBadName != 0:
		return fasthttp.StatusBadRequest, "400 invalid header field name\n"
	case found&hRepeatedSingleton != 0:
		// fasthttp keeps the last line only: a filter before sluice that
		// read the first would disagree with the backend (found by
		// review). Refused, as a repeated Host or Content-Length is.
		return fasthttp.StatusBadRequest, "400 repeated Content-Type or User-Agent\n"
	case !bytes.Equal(h.Protocol(), strHTTP11) && !bytes.Equal(h.Protocol(), strHTTP10):
		return fasthttp.StatusHTTPVersionNotSupported, "505 HTTP version not supported\n"
	case h.IsConnect():
		return fasthttp.StatusMethodNotAllowed, "405 CONNECT is not supported\n"
	case bytes.IndexByte(h.Host(), '@') >= 0:
		// fasthttp would turn user:pass@ into an Authorization header.
		return fasthttp.StatusBadRequest, "400 userinfo in Host\n"
	case !validHostField(h.Host()):
		// fasthttp checks Host only where it builds the URI from it (an
		// origin-form target); an absolute-form target's host replaces
		// it, and "Host: a b" went on unseen (RFC 9112 §3.2 asks for a
		// 400 whatever the target's form; found by review).
		return fasthttp.StatusBadRequest, "400 invalid Host\n"
	case len(h.Host()) > maxHostLen:
		// Longer than any DNS name (253) with a port: routing would not
		// fold its case (normalizeHost's buffer; found by review).
		return fasthttp.StatusBadRequest, "400 Host too long\n"
	case len(h.Host()) > 0 && len(normalizeHost(h.Host(), nil)) == 0:
		// ":80", ".", ".:80": no host name, which RFC 9110 §4.2.1 makes
		// invalid, as for "http://:80/x" below; routed, it would take
		// the route of a request without Host (found by review).
		return fasthttp.StatusBadRequest, "400 no host name in Host\n"
	}
	return checkTarget(h.RequestURI())
}

// bareLFEnd reports whether a request's raw header fields (the head after
// its request line, blank line included) end otherwise than in CRLFCRLF:
// a bare LF ends the blank line or the line before it. (Fields that are
// empty leave nothing to look at: a request line and its blank line.)
func bareLFEnd(raw []byte) bool {
	return len(raw) > 0 && !bytes.HasSuffix(raw, strCRLFCRLF)
}

// allowedMethods is the Allow field of the 405 for CONNECT: the methods
// of RFC 9110 and PATCH (any other method is forwarded too).
const allowedMethods = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"

// maxHostLen bounds a Host header (and fits normalizeHost's buffer).
const maxHostLen = 255

// checkTarget vets the request-target as received: no fragment (RFC 9112
// §3.2), and an absolute-form target only with the http scheme and no
// userinfo, which fasthttp would turn into an Authorization header.
func checkTarget(t []byte) (int, string) {
	if bytes.IndexByte(t, '#') >= 0 {
		return fasthttp.StatusBadRequest, "400 fragment in request target\n"
	}
	if len(t) == 1 && t[0] == '*' {
		return 0, ""
	}
	if len(t) == 0 || t[0] == '/' {
		if len(t) > 1 && t[1] == '/' {
			// fasthttp reads "//x/..." as an authority when the target
			// holds "://" anywhere or the request has no Host: it routed
			// and forwarded "//admin/x?u=http://y" as "/x", and made
			// "//user:pw@h/..." an Authorization header (found by review).
			return fasthttp.StatusBadRequest, "400 request target starts with //\n"
		}
		return checkPath(t)
	}
	// sluice speaks plain HTTP to its backends: an https:// target would
	// make the upstream client try TLS and fail as a 502.
	if len(t) <= 7 || !bytes.EqualFold(t[:7], []byte("http://")) {
		return fasthttp.StatusBadRequest, "400 request target must be a path or an http:// URL\n"
	}
	authority := targetHost(t)
	path := t[7+len(authority):]
	switch {
	case bytes.IndexByte(authority, '@') >= 0:
		return fasthttp.StatusBadRequest, "400 userinfo in request target\n"
	case len(authority) > maxHostLen:
		// It replaces the Host header, which is held to the same bound
		// (found by review).
		return fasthttp.StatusBadRequest, "400 host in request target too long\n"
	case len(normalizeHost(authority, nil)) == 0:
		// "http://:80/x" too: RFC 9110 §4.2.1, an http URI with an
		// empty host is invalid (found by review).
		return fasthttp.StatusBadRequest, "400 no host in request target\n"
	case !validHostField(authority):
		// It replaces the Host header, and is held to the same bytes
		// (found by review: http://a"b/x went upstream as Host: a"b).
		return fasthttp.StatusBadRequest, "400 invalid host in request target\n"
	case len(path) > 1 && path[0] == '/' && path[1] == '/':
		// It goes upstream in origin form, "//...", which a backend may
		// read as an authority, as above (found by review).
		return fasthttp.StatusBadRequest, "400 request target path starts with //\n"
	}
	return checkPath(path)
}

// checkPath refuses a path whose dot segments fasthttp's normalisation,
// which sluice routes on, resolves differently from a backend that
// follows RFC 3986, which gets the path as sent: a percent-encoded dot
// segment ("%2e%2e", ".%2E"), which fasthttp decodes and then removes
// and a backend keeps as a name, and any dot segment in a path with an
// encoded slash ("%2F"), which fasthttp decodes into a segment boundary.
// "/admin/%2e%2e/y" was routed as "/y", away from an "/admin/" route, and
// still reached the backend's "/admin/" handler (found by review).
// Plain dot segments are resolved alike on both sides, unless an empty
// segment ("//") comes before a "..": fasthttp merges the slashes first,
// so "/admin//../y" is routed as "/y", while RFC 3986 §5.2.4 has the ".."
// remove the empty segment and reads "/admin/y" (found by review).
func checkPath(path []byte) (int, string) {
	// Two scans for the usual target, which has neither an escape nor
	// an empty segment.
	escaped := bytes.IndexByte(path, '%') >= 0
	if !escaped && !bytes.Contains(path, doubleSlash) {
		return 0, ""
	}
	if q := bytes.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	if e := bytes.Index(path, doubleSlash); e >= 0 && dotDotSegment(path[e+1:]) {
		return fasthttp.StatusBadRequest, "400 empty segment before .. in request target\n"
	}
	if !escaped {
		return 0, ""
	}
	encodedSlash := containsFold(path, "%2f")
	// Segments end at '/' and, on fasthttp's side, at an encoded slash.
	for start, i := 0, 0; i <= len(path); {
		end, next := -1, 0
		switch {
		case i == len(path):
			end, next = i, i+1
		case path[i] == '/':
			end, next = i, i+1
		case i+3 <= len(path) && path[i] == '%' && path[i+1] == '2' && path[i+2]|0x20 == 'f':
			end, next = i, i+3
		}
		if end < 0 {
			i++
			continue
		}
		if dots, encoded := dotSegment(path[start:end]); dots && (encoded || encodedSlash) {
			return fasthttp.StatusBadRequest, "400 encoded dot segment or slash in request target\n"
		}
		start, i = next, next
	}
	return 0, ""
}

var doubleSlash = []byte("//")

// dotDotSegment reports whether path has a plain ".." segment.
func dotDotSegment(path []byte) bool {
	for len(path) > 0 {
		seg := path
		if i := bytes.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = nil
		}
		if len(seg) == 2 && seg[0] == '.' && seg[1] == '.' {
			return true
		}
	}
	return false
}

// dotSegment reports whether seg is "." or ".." once "%2e" is decoded,
// and whether it was encoded so.
func dotSegment(seg []byte) (dots, encoded bool) {
	n := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && seg[2]|0x20 == 'e':
			seg, encoded = seg[3:], true
		default:
			return false, false
		}
		n++
	}
	return n == 1 || n == 2, encoded
}

// containsFold reports whether b holds s (ASCII, any case).
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// targetHost returns the authority (host and port) of an absolute-form
// request-target, nil for origin form and "*". Other forms are refused
// by checkTarget before this is used for anything else.
func targetHost(t []byte) []byte {
	if len(t) < 7 || t[0] == '/' || t[0] == '*' {
		return nil
	}
	rest := t[7:] // past "http://"
	if end := bytes.IndexAny(rest, "/?"); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

// hasTrailerNames reports whether a request has trailer names to look at:
// a chunked one that announced some or sent trailer fields (fasthttp
// records both in its trailer set). Looking in an empty set through the
// trailerHeader interface cost 10 allocations per chunked request (found
// by review).
func hasTrailerNames(h *fasthttp.RequestHeader, found headerSet) bool {
	return found&hTransferEncoding != 0 && len(h.Peek(fasthttp.HeaderTrailer)) > 0
}

// maxKeptFields is the most fields a request or response head may have
// for its client connection to be kept open after the answer: HAProxy's
// and Envoy's limit on the fields of a head (about 100), which sluice
// takes but does not keep.
const maxKeptFields = 100

// manyFields reports whether fields (a head's field lines and its empty
// line, as RawHeaders holds a request's) has more than maxKeptFields
// lines before its empty line. A folded line counts as one more: this
// bounds memory, not syntax.
func manyFields(head []byte) bool {
	return bytes.Count(head, strLF) > maxKeptFields+1
}

var strLF = []byte("\n")

// ClientWriteBufferSize is the write buffer of the server that calls
// Handle (fasthttp.Server.WriteBufferSize; fasthttp's default): a
// response with at least this many body bytes takes two writes or more.
// netconn's server connections know it too (its head watch).
const ClientWriteBufferSize = netconn.ServerWriteBufferSize

// writeHolder is a client connection that can send the first write of a
// long response together with the next (netconn.Conn.HoldNextWrite).
type writeHolder interface{ HoldNextWrite() }

// holdLongResponse asks the client connection to send a response that
// cannot fit the server's write buffer with one writev rather than two
// writes, when the body will be sent and is that long.
func holdLongResponse(ctx *fasthttp.RequestCtx) {
	resp := &ctx.Response
	if resp.IsBodyStream() || len(resp.Body()) < ClientWriteBufferSize || resp.SkipBody || ctx.IsHead() {
		return
	}
	if bodyless(resp.StatusCode()) {
		return
	}
	if c, ok := ctx.Conn().(writeHolder); ok {
		c.HoldNextWrite()
	}
}

// logAccess fills and queues one access log entry; it never blocks.
func logAccess(al *accesslog.Logger, ctx *fasthttp.RequestCtx, start, end time.Time, out outcome) {
	e := al.Acquire()
	e.Time = start
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		e.Remote = a.AddrPort()
	}
	e.Method = append(e.Method, ctx.Method()...)
	switch {
	case out.hostForwarded:
		e.Host = append(e.Host, ctx.Request.Header.PeekBytes(hdrXForwardedHost)...)
	case out.hostCopied:
		e.Host = append(e.Host, out.clientHost...)
	default:
		e.Host = append(e.Host, ctx.Request.Header.Host()...)
	}
	e.Path = append(e.Path, ctx.Path()...)
	e.Status = ctx.Response.StatusCode()
	e.BytesIn = len(ctx.Request.Body())
	e.BytesOut = bodySent(ctx)
	e.Duration = end.Sub(start)
	if !out.idMade || out.sent {
		// An id sluice made for a request that reached no backend
		// names nothing (found by review: a 502 after refused connects
		// logged one).
		e.RequestID = append(e.RequestID, ctx.Request.Header.PeekBytes(hdrXRequestID)...)
	}
	if out.route != nil {
		e.Route, e.Pool = out.route.name, out.route.pool.name
	}
	if out.upstream != nil {
		e.UpstreamAddr, e.UpstreamDuration = out.upstream.backend.Addr, out.upTime
	}
	e.Attempts, e.UpstreamError = int(out.attempts), out.failure.String()
	al.Submit(e)
}

func metricKind(k errKind) metrics.ErrorKind {
	switch k {
	case kindConnect, kindConnectTimeout:
		return metrics.KindConnect
	case kindTimeout:
		return metrics.KindTimeout
	case kindReset:
		return metrics.KindReset
	default:
		return metrics.KindOther
	}
}

var strHTTP10 = []byte("HTTP/1.0")

// turnCounter is netconn.Conn's count of request turns (Turns).
type turnCounter interface{ Turns() uint64 }

// hintable reports whether a backend's 103 Early Hints may go to this
// client now: it speaks HTTP/1.1 (the request goes upstream as HTTP/1.1
// either way, so fasthttp's own check cannot tell), and no answer to an
// earlier request on its connection can still sit unsent in the server's
// write buffer, as one does when requests come pipelined: fasthttp writes
// a 103 around that buffer, so it would overtake that answer or land
// inside it. netconn's Turns says the requests so far each came after
// the answer before them. A 100 Continue on the connection puts Turns
// ahead for good, and with it any later pipelining out of sight: from
// then on the connection gets none.
func hintable(ctx *fasthttp.RequestCtx, http11 bool) bool {
	if !http11 {
		return false
	}
	t, ok := ctx.Conn().(turnCounter)
	return ok && t.Turns() == ctx.ConnRequestNum()
}

// maxHintWrite bounds the wait to write a 103 to the client: it goes out
// while the backend works, under the exchange's deadline, so a client
// that does not read must not hold it for long.
const maxHintWrite = time.Second

// clientHints writes 103 answers to the client under a write deadline of
// their own (the last one set may be long past, or none: fasthttp sets
// one only before a final answer). After a failed write none is tried
// again, and Handle closes the connection after the final answer, which a
// part of a 103 sent before it would leave the client unable to read.
// At most maxHints go to the client per request, whatever the number of
// attempts (readResponse caps each exchange's as well).
type clientHints struct {
	ctx     *fasthttp.RequestCtx
	timeout time.Duration
	sent    int
	failed  bool
}

func (h *clientHints) EarlyHints() error {
	if h.failed || h.sent >= maxHints {
		return nil
	}
	if err := h.ctx.Conn().SetWriteDeadline(time.Now().Add(h.timeout)); err == nil {
		if err = h.ctx.EarlyHints(); err == nil {
			h.sent++
			return nil
		}
	}
	h.failed = true
	return nil
}

// forwarding is config.Forwarding as the data plane applies it.
type forwarding struct {
	xff                    xffMode
	proto, host, requestID bool
}

// xffMode is what a request's X-Forwarded-For becomes upstream.
type xffMode uint8

const (
	xffAppend  xffMode = iota // the client's list, then the client
	xffReplace                // the client alone
	xffPass                   // as the client sent it
)

func newForwarding(c config.Forwarding) forwarding {
	fw := forwarding{proto: c.XForwardedProto, host: c.XForwardedHost, requestID: c.RequestID}
	switch c.XForwardedFor {
	case "replace":
		fw.xff = xffReplace
	case "pass":
		fw.xff = xffPass
	}
	return fw
}

// prepareRequest rewrites the request in place for the upstream: strips
// hop-by-hop headers, sets the forwarding headers fw asks for, and picks
// the Host to send.
func prepareRequest(ctx *fasthttp.RequestCtx, rawHost []byte, found headerSet, fw forwarding, buf []byte) (_ []byte, idMade bool) {
	req := &ctx.Request
	h := &req.Header
	buf = stripHopByHop(h, found, buf)
	if found&hExpect != 0 {
		// sluice answered the client's Expect itself (100 Continue, or a
		// refusal) and read the body whole before this: the backend gets
		// the body at once and has nothing to continue, as from nginx,
		// which drops Expect too. Left in, it had a backend send a 100
		// that sluice then read and dropped.
		h.DelBytes(hdrExpect)
	}
	if found&hForwardedAlias != 0 {
		dropForwardedAliases(h, h.RawHeaders(), fw)
	}
	h.ResetConnectionClose()
	h.SetProtocolBytes(strHTTP11)

	h.SetNoDefaultContentType(true)

	if fw.xff != xffPass {
		// All X-Forwarded-For headers the client sent become one list
		// with the client appended: a second header left as it was
		// would put a client-chosen address after ours.
		buf = buf[:0]
		if found&hXForwardedFor != 0 {
			if fw.xff == xffAppend {
				for _, v := range h.PeekAll("X-Forwarded-For") {
					if v = bytes.TrimSpace(v); len(v) > 0 {
						buf = append(buf, v...)
						buf = append(buf, ", "...)
					}
				}
			}
			h.DelBytes(hdrXForwardedFor)
		}
		buf = appendIP(buf, ctx.RemoteIP())
		// Each name is deleted first or was not there: add, no lookup.
		h.AddBytesKV(hdrXForwardedFor, buf)
	}
	// The client does not get to choose these: delete every copy first.
	if fw.proto {
		if found&hXForwardedProto != 0 {
			h.DelBytes(hdrXForwardedProto)
		}
		h.AddBytesKV(hdrXForwardedProto, valueHTTP)
	}
	if fw.host {
		if found&hXForwardedHost != 0 {
			h.DelBytes(hdrXForwardedHost)
		}
		if len(rawHost) > 0 {
			h.AddBytesKV(hdrXForwardedHost, rawHost)
		}
	}
	switch {
	case !fw.requestID:
	case found&hXRequestID == 0:
		buf = appendRequestID(buf[:0])
		h.AddBytesKV(hdrXRequestID, buf)
		idMade = true
	default:
		// One X-Request-Id goes upstream, the one the access log shows:
		// the client's first, or a new one if that is empty (found by
		// review: behind an empty line, or beside a second one, the
		// client's other ones went upstream too, and a backend that
		// reads the last or joins them logged an id the access log
		// never showed).
		ids := h.PeekAll(headerXRequestID)
		if len(ids) == 1 && len(ids[0]) > 0 {
			break // the usual case: one, passed on
		}
		if len(ids) > 0 && len(ids[0]) > 0 {
			buf = append(buf[:0], ids[0]...)
		} else {
			buf, idMade = appendRequestID(buf[:0]), true
		}
		h.DelBytes(hdrXRequestID)
		h.AddBytesKV(hdrXRequestID, buf)
	}
	// Forward the request-target exactly as received (routing used the
	// normalised path), and keep the Host header rather than the URI's.
	req.URI().DisablePathNormalizing = true
	req.UseHostHeader = true
	return buf, idMade
}

var (
	strHTTP11   = []byte("HTTP/1.1")
	strCRLFCRLF = []byte("\r\n\r\n")
)

// requestKey is the hash of the pool's hash_key for this request, or a
// random number when the pool does not hash or the request lacks the key.
func (p *pool) requestKey(ctx *fasthttp.RequestCtx, host []byte) uint64 {
	var v []byte
	switch p.hashKey.Kind {
	case config.HashNone:
		return rand.Uint64()
	case config.HashSourceIP:
		ip := ctx.RemoteIP()
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		v = ip
	case config.HashHeader:
		v = ctx.Request.Header.PeekBytes(p.hashName)
	case config.HashCookie:
		v = cookieValue(ctx.Request.Header.PeekAll("Cookie"), p.hashName)
	case config.HashQuery:
		v = queryValue(ctx.URI().QueryString(), p.hashName)
	case config.HashPath:
		v = ctx.Path()
	case config.HashHost:
		v = host
	}
	if len(v) == 0 {
		return rand.Uint64()
	}
	return balancer.HashKey(v)
}

// recordOutcome counts an attempt's outcome towards up's outlier
// detection, and reports the backend when it completes a streak.
func (p *Proxy) recordOutcome(up *upstream, failed bool) {
	if up.outlier.Record(failed) && p.trips != nil {
		p.trips.Put(health.Event{Pool: up.backend.Pool, Addr: up.backend.Addr, Source: health.SourcePassive, Reason: "consecutive failures"})
	}
}

// maxIdleRetries bounds the tries of one attempt: the idle connections
// found dead (closed by the backend, or holding unrequested bytes) it
// goes through, the last try on a new connection. After a backend
// restart every idle connection to it is dead; the new one is not.
const maxIdleRetries = 8

// retryable says whether a failed attempt may be tried again on another
// backend: always when the request never left (connect failed, no free
// connection), and for idempotent methods when the connection broke.
// Timeouts are not retried: the backend may still be working on it.
func retryable(kind errKind, req *fasthttp.Request) bool {
	switch {
	case notSent(kind):
		return true
	case kind == kindReset:
		return isIdempotent(req.Header.Method())
	default:
		return false
	}
}

// notSent says whether an attempt that failed so never sent its request:
// no connection was made, or none was free.
func notSent(kind errKind) bool {
	return kind == kindConnect || kind == kindConnectTimeout || kind == kindNoConn
}

func isIdempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// logFailure logs attempt's failure on up to the process log, if on;
// retried says the request went on to another attempt.
func (p *Proxy) logFailure(ctx *fasthttp.RequestCtx, up *upstream, attempt int, kind errKind, err error, at time.Time, retried bool) {
	if p.failures != nil {
		p.failures.attempt(at, up.backend.Pool, up.backend.Addr, attempt, kind, err, ctx.RemoteAddr(), retried)
	}
}

// noBackend answers 503 for want of a backend in pool pl to send the
// request to, and counts and logs it.
func (p *Proxy) noBackend(ctx *fasthttp.RequestCtx, pl *pool, now time.Time) {
	pl.series.NoBackend()
	writeError(ctx, fasthttp.StatusServiceUnavailable, "503 no usable backend\n")
	ctx.Response.Header.SetBytesKV(hdrRetryAfter, valueOne)
	if p.failures != nil {
		p.failures.noBackend(now, pl.name, ctx.RemoteAddr())
	}
}

func writeError(ctx *fasthttp.RequestCtx, code int, msg string) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(code)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetBodyString(msg)
}

// errKind sorts upstream failures for status codes, retries and metrics.
type errKind uint8

const (
	kindNone errKind = iota
	kindOther
	kindTooLarge
	kindConnect
	kindConnectTimeout
	kindTimeout
	kindReset
	kindNoConn
	numErrKinds
)

// errKindNames are the access log's upstream_error values.
var errKindNames = [numErrKinds]string{
	kindNone:           "",
	kindOther:          "bad_response", // a malformed response, mostly (see errorKind)
	kindTooLarge:       "response_too_large",
	kindConnect:        "connect",
	kindConnectTimeout: "connect_timeout",
	kindTimeout:        "timeout",
	kindReset:          "reset",
	kindNoConn:         "conn_limit",
}

func (k errKind) String() string { return errKindNames[k] }

func errorKind(err error) errKind {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return kindTimeout
	case errors.Is(err, errNewConnClosed):
		return kindConnect
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return kindNoConn
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return kindTooLarge
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, netconn.ErrIdleClosed), errors.Is(err, netconn.ErrUnsolicited),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return kindReset
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		if isDial(err) {
			return kindConnectTimeout
		}
		return kindTimeout
	}
	if isDial(err) {
		return kindConnect
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return kindReset // a read or write on the connection failed
	}
	// Anything else (a malformed response, a request fasthttp refused to
	// send) says nothing about the connection: not retried, not counted
	// against the backend.
	return kindOther
}

// classify maps an upstream failure to the status and body the client gets.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errBadStatus):
		return fasthttp.StatusBadGateway, "502 upstream sent an invalid status code\n"
	case errors.Is(err, errTENotHTTP11):
		return fasthttp.StatusBadGateway, "502 upstream sent Transfer-Encoding in a response that is not HTTP/1.1\n"
	}
	switch errorKind(err) {
	case kindConnectTimeout, kindTimeout:
		return fasthttp.StatusGatewayTimeout, "504 upstream timed out\n"
	case kindNoConn:
		return fasthttp.StatusServiceUnavailable, "503 upstream connection limit reached\n"
	case kindTooLarge:
		return fasthttp.StatusBadGateway, "502 upstream response too large\n"
	default:
		return fasthttp.StatusBadGateway, "502 upstream unavailable\n"
	}
}
