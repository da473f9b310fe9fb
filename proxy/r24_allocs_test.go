//go:build !race

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// The zero-allocation tests of alloc_test.go and alloc_tcp_test.go cover
// the happy path. These cover the other steady states README's "no
// allocation in steady state" takes in: over loopback TCP, with sluice's
// real listener and upstream client, backends and client that allocate
// nothing per request (raw sockets, fasthttp's parsers on reused values),
// and an allocation profile at rate 1 that tells sluice's request path
// (fasthttp's server, the handler, netconn, the access log's writer) from
// the control plane (controller, probes) and from the test's own client
// and backends, so that a control plane busy meanwhile (slow start, probes,
// ejections) is not counted against the request path.

// r24AllocsReply answers one request a backend read, writing to w;
// false closes the connection after the answer.
type r24AllocsReply func(req *fasthttp.Request, w *bufio.Writer) bool

// r24AllocsBackend serves reply on 127.0.0.1 over raw sockets, one
// goroutine per connection, and returns its address.
func r24AllocsBackend(tb testing.TB, reply r24AllocsReply) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				br := bufio.NewReaderSize(c, 16<<10)
				bw := bufio.NewWriterSize(c, 16<<10)
				var req fasthttp.Request
				for {
					if err := req.Read(br); err != nil {
						return
					}
					if req.MayContinue() {
						if err := req.ContinueReadBody(br, 0); err != nil {
							return
						}
					}
					keep := reply(&req, bw)
					if bw.Flush() != nil || !keep {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// r24AllocsFixed replies with the bytes of answer (a HEAD request
// gets only its head: answer's part up to the blank line).
func r24AllocsFixed(answer string) r24AllocsReply {
	full := []byte(answer)
	head := full[:bytes.Index(full, []byte("\r\n\r\n"))+4]
	return func(req *fasthttp.Request, w *bufio.Writer) bool {
		if req.Header.IsHead() {
			_, _ = w.Write(head)
		} else {
			_, _ = w.Write(full)
		}
		return true
	}
}

const r24AllocsOK = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

// r24AllocsClient is a client connection to sluice that sends
// prepared bytes and reads the answers with fasthttp's parser into reused
// values: it allocates nothing per request while its connection lasts.
type r24AllocsClient struct {
	tb      testing.TB
	addr    string
	c       net.Conn
	br      *bufio.Reader
	resp    fasthttp.Response
	interim fasthttp.ResponseHeader
	// redials counts the connections opened after the first.
	redials int
}

func r24AllocsDial(tb testing.TB, addr string) *r24AllocsClient {
	c := &r24AllocsClient{tb: tb, addr: addr}
	c.resp.KeepBodyBuffer = true
	c.dial()
	c.redials = 0
	tb.Cleanup(func() {
		if c.c != nil {
			c.c.Close()
		}
	})
	return c
}

func (c *r24AllocsClient) dial() {
	if c.c != nil {
		c.c.Close()
	}
	conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.c = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	c.redials++
}

// roundTrip writes raw (n pipelined requests) and reads n answers, each of
// whose status must be in want; head says the requests are HEADs. A
// connection the answer closes is replaced before the next round trip.
func (c *r24AllocsClient) roundTrip(raw []byte, n int, head bool, want r24AllocsWant) {
	if c.c == nil {
		c.dial()
	}
	_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(raw); err != nil {
		c.tb.Fatalf("write: %v", err)
	}
	for i := range n {
		c.resp.SkipBody = head
		if err := c.resp.Read(c.br); err != nil {
			c.tb.Fatalf("answer %d: %v", i, err)
		}
		c.check(want)
	}
	if c.resp.ConnectionClose() {
		c.c.Close()
		c.c = nil
	}
}

// continued sends head, waits for its 100 Continue, then sends body and
// reads the final answer.
func (c *r24AllocsClient) continued(head, body []byte, want r24AllocsWant) {
	if c.c == nil {
		c.dial()
	}
	_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(head); err != nil {
		c.tb.Fatalf("write: %v", err)
	}
	if err := c.interim.Read(c.br); err != nil || c.interim.StatusCode() != fasthttp.StatusContinue {
		c.tb.Fatalf("interim answer: %v, status %d, want 100", err, c.interim.StatusCode())
	}
	if _, err := c.c.Write(body); err != nil {
		c.tb.Fatalf("write body: %v", err)
	}
	c.resp.SkipBody = false
	if err := c.resp.Read(c.br); err != nil {
		c.tb.Fatalf("answer: %v", err)
	}
	c.check(want)
	if c.resp.ConnectionClose() {
		c.c.Close()
		c.c = nil
	}
}

// r24AllocsWant is the statuses an answer may have (an array: a
// variadic slice would be allocated per call).
type r24AllocsWant [2]int

func (c *r24AllocsClient) check(want r24AllocsWant) {
	if s := c.resp.StatusCode(); s != want[0] && s != want[1] {
		c.tb.Fatalf("status %d (body %q), want one of %v", c.resp.StatusCode(), c.resp.Body(), want)
	}
}

// r24AllocsStack is one allocation site's stack in a profile.
type r24AllocsStack struct {
	objects int64
	frames  []string // function file:line, innermost first
}

var r24AllocsRecord = regexp.MustCompile(`^\d+: \d+ \[(\d+): \d+\] @(( 0x[0-9a-f]+)*)$`)

// r24AllocsProfile reads the allocation profile (objects allocated
// since the start, by stack), as of the last completed collection.
func r24AllocsProfile(tb testing.TB) map[string]*r24AllocsStack {
	runtime.GC() // publishes the profile up to now (one collection: a second would empty sync.Pools)
	var b bytes.Buffer
	if err := pprof.Lookup("allocs").WriteTo(&b, 1); err != nil {
		tb.Fatal(err)
	}
	stacks := map[string]*r24AllocsStack{}
	var cur *r24AllocsStack
	for _, line := range strings.Split(b.String(), "\n") {
		if m := r24AllocsRecord.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			cur = stacks[m[2]]
			if cur == nil {
				cur = &r24AllocsStack{}
				stacks[m[2]] = cur
				cur.frames = cur.frames[:0]
			} else {
				cur.frames = cur.frames[:0] // the same stack again (another size class)
			}
			cur.objects += n
			continue
		}
		if cur != nil && strings.HasPrefix(line, "#\t") {
			// #	0x4a1b2c	pkg.func+0x2c	/path/file.go:123
			f := strings.Split(line, "\t")
			if len(f) >= 4 {
				fn := f[2]
				if i := strings.LastIndex(fn, "+0x"); i > 0 {
					fn = fn[:i]
				}
				cur.frames = append(cur.frames, fn+" "+filepath.Base(f[3]))
			}
			continue
		}
		cur = nil
	}
	return stacks
}

// r24AllocsResult is what the requests of one measurement allocated,
// per request: in the whole process, on sluice's request path, and in the
// control plane; sites lists the request path's stacks.
type r24AllocsResult struct {
	total, path, control float64
	// refill is the part of path made by a sync.Pool's New (see
	// r24AllocsRefill).
	refill float64
	sites  []string
	// gc counts the sync.Pool structures remade after the collections
	// the measurement makes (not per request).
	gc int64
}

// r24AllocsTop is the innermost frame outside the runtime.
func r24AllocsTop(frames []string) string {
	for _, f := range frames {
		if !strings.HasPrefix(f, "runtime.") {
			return f
		}
	}
	return ""
}

// r24AllocsRefill says a request path allocation was a sync.Pool's
// New, refilling a pool the profile's collections emptied: a pool's Get
// among the innermost frames outside the runtime.
func r24AllocsRefill(frames []string) bool {
	seen := 0
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.") {
			continue
		}
		if strings.HasPrefix(f, "sync.(*Pool).Get") || strings.HasPrefix(f, "sluice/proxy.(*bodyPools).get") {
			return true
		}
		if seen++; seen == 3 {
			return false
		}
	}
	return false
}

// r24AllocsKind sorts a stack: "gc" (see below), "test" (this file's client and
// backends, the test itself), "control" (controller, probes, discovery),
// "path" (fasthttp's server, the handler, netconn, the access log) or
// "other".
func r24AllocsKind(frames []string) string {
	joined := strings.Join(frames, "\n")
	switch {
	case strings.HasPrefix(r24AllocsTop(frames), "sync.(*Pool).pinSlow"),
		strings.HasPrefix(r24AllocsTop(frames), "sync.(*poolChain).pushHead"):
		// A sync.Pool's per-processor array and queue, made again after
		// the collection that publishes the profile (r24AllocsProfile):
		// the measurement's own doing, a few per pool, not per request.
		return "gc"
	case strings.Contains(joined, "r24"), strings.Contains(joined, "testing.tRunner"):
		return "test"
	case strings.Contains(joined, "(*Controller)"), strings.Contains(joined, "sluice/health."),
		strings.Contains(joined, "sluice/discovery."):
		return "control"
	case strings.Contains(joined, "fasthttp.(*Server)"), strings.Contains(joined, "fasthttp.(*workerPool)"),
		strings.Contains(joined, "sluice/proxy."), strings.Contains(joined, "sluice/netconn."),
		strings.Contains(joined, "sluice/accesslog."):
		return "path"
	}
	return "other"
}

// r24AllocsMeasure runs do n times, and for at least span (after the
// caller's warm-up), with every allocation profiled and returns the
// allocations per run.
func r24AllocsMeasure(tb testing.TB, n int, span time.Duration, do func()) r24AllocsResult {
	tb.Helper()
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	before := r24AllocsProfile(tb)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for i := 0; i < n || time.Since(start) < span; i++ {
		do()
		n = max(n, i+1)
	}
	runtime.ReadMemStats(&m1)
	after := r24AllocsProfile(tb)
	var r r24AllocsResult
	r.total = float64(m1.Mallocs-m0.Mallocs) / float64(n)
	type site struct {
		objects int64
		text    string
	}
	var sites []site
	var path, control, refill int64
	for k, s := range after {
		d := s.objects
		if p := before[k]; p != nil {
			d -= p.objects
		}
		if d <= 0 {
			continue
		}
		switch r24AllocsKind(s.frames) {
		case "path":
			path += d
			if r24AllocsRefill(s.frames) {
				refill += d
			}
			var fr []string
			for _, f := range s.frames {
				if len(fr) == 0 && (strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/")) {
					continue
				}
				if len(fr) < 6 {
					fr = append(fr, f)
				}
			}
			sites = append(sites, site{d, strings.Join(fr, " < ")})
		case "control":
			control += d
		case "gc":
			r.gc += d
		}
	}
	slices.SortFunc(sites, func(a, b site) int { return int(b.objects - a.objects) })
	for _, s := range sites {
		r.sites = append(r.sites, fmt.Sprintf("%.3f/req (%d): %s", float64(s.objects)/float64(n), s.objects, s.text))
	}
	r.path = float64(path) / float64(n)
	r.control = float64(control) / float64(n)
	r.refill = float64(refill) / float64(n)
	return r
}

// r24AllocsYAML is a config routing everything to pool p of the
// given backends (round robin) with extra appended; extraPool goes into
// the pool's block (indented by the caller).
func r24AllocsYAML(extraPool, extra string, backends ...string) string {
	var b strings.Builder
	b.WriteString("routes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n")
	b.WriteString(extraPool)
	b.WriteString("    backends:\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "      - { address: %s }\n", a)
	}
	b.WriteString(extra)
	return b.String()
}

// r24AllocsRun warms do up and counts the allocations of n more runs
// in the whole process, as testing.AllocsPerRun does, with no collection
// forced (a collection empties sync.Pools, whose refill is no request's
// doing), in up to five windows: a steady state that allocates nothing
// has at least one window of none (the others may hold a transient: a
// thread the runtime starts, a pool refilled after a collection). Where
// every window allocated it profiles n more runs and fails with the
// request path's sites. With busy set (the control plane allocates
// meanwhile: slow start, probes, ejections) it goes straight to the
// profile, over at least that long, and fails if the request path
// allocated, leaving out the refill of pools after the profile's own
// collections.
func r24AllocsRun(t *testing.T, warm, n int, busy time.Duration, do func()) r24AllocsResult {
	t.Helper()
	for range warm {
		do()
	}
	var r r24AllocsResult
	if busy == 0 {
		var counts []uint64
		for range 5 {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for range n {
				do()
			}
			runtime.ReadMemStats(&m1)
			counts = append(counts, m1.Mallocs-m0.Mallocs)
			if m1.Mallocs == m0.Mallocs {
				t.Logf("allocations in windows of %d requests: %v", n, counts)
				return r
			}
		}
		r.total = float64(slices.Min(counts)) / float64(n)
		t.Logf("allocations in windows of %d requests: %v", n, counts)
	}
	p := r24AllocsMeasure(t, n, busy, do)
	t.Logf("profiled: %.3f per request in the process, %.3f on the request path (%.3f of it pool refills), %.3f in the control plane",
		p.total, p.path, p.refill, p.control)
	if busy > 0 {
		r = p
		if got := p.path - p.refill; got != 0 {
			t.Errorf("request path allocates %.3f times per request (%d requests), want 0; sites:\n%s", got, n, strings.Join(p.sites, "\n"))
		}
		return r
	}
	t.Errorf("allocates at least %.3f times per request (%d requests, every window), want 0; request path sites (profiled):\n%s", r.total, n, strings.Join(p.sites, "\n"))
	return r
}

// r24AllocsGET is a plain GET of path with extra header lines.
func r24AllocsGET(method, path, extra string) []byte {
	return []byte(method + " " + path + " HTTP/1.1\r\nHost: app.example\r\nUser-Agent: r24\r\n" + extra + "\r\n")
}

// r24AllocsOKBackend is a backend answering 200 "ok".
func r24AllocsOKBackend(tb testing.TB) string {
	return r24AllocsBackend(tb, r24AllocsFixed(r24AllocsOK))
}

// r24AllocsStart serves yml (metrics on) and returns a client to it.
func r24AllocsStart(t *testing.T, yml string) (*testProxy, *r24AllocsClient) {
	px := startProxyWith(t, yml, metrics.New("r24"))
	return px, r24AllocsDial(t, px.addr)
}

// TestAllocChunkedRequestBody: a request with a chunked body (no
// trailer) allocates nothing once warm, as one with a Content-Length does
// (TestProxyZeroAllocsTCP's POST). Found by review: 10 allocations per
// request, from the range-over-func loops over the request's announced
// trailers in tooManyTrailers and dropTrailers (headers.go), called for
// every chunked request through the trailerHeader interface, so the
// loops' closures and the variables they capture go to the heap, and
// fasthttp's Trailers() iterator with them.
func TestAllocChunkedRequestBody(t *testing.T) {
	_, c := r24AllocsStart(t, r24AllocsYAML("", "", r24AllocsOKBackend(t)))
	raw := []byte("POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
		"10\r\n0123456789abcdef\r\n400\r\n" + strings.Repeat("u", 1024) + "\r\n0\r\n\r\n")
	r24AllocsRun(t, 1000, 1000, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
}

// TestAllocSteadyStates: on a kept-alive client connection, the
// request path allocates nothing per request in steady states other than
// the plain GET: with the access log, forwarding headers and request ids,
// sluice's own 404 and 503, answers without bodies, a chunked response,
// uploads with a Content-Length, HEAD, many fields, sticky sessions, 103
// and 100 interim answers, pipelining, and with the control plane busy
// (slow start, probes, outlier ejections).
func TestAllocSteadyStates(t *testing.T) {
	ok := r24AllocsOKBackend
	start := r24AllocsStart
	accessLog := func(t *testing.T, px *testProxy) {
		al, err := accesslog.New(config.AccessLog{Enabled: true, Path: filepath.Join(t.TempDir(), "access.log"), Sample: 1}, nil, func() {})
		if err != nil {
			t.Fatal(err)
		}
		px.proxy.SetAccessLog(al)
		t.Cleanup(func() {
			px.proxy.SetAccessLog(nil)
			_ = al.Close()
		})
	}
	const warm, n = 1000, 1000

	t.Run("access log, request id generated", func(t *testing.T) {
		px, c := start(t, r24AllocsYAML("", "", ok(t), ok(t)))
		accessLog(t, px)
		raw := r24AllocsGET("GET", "/items/42?expand=owner", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("access log, request id passed, preserve_host false", func(t *testing.T) {
		px, c := start(t, r24AllocsYAML("", "preserve_host: false\nforwarding: { x_forwarded_host: false }\n", ok(t), ok(t)))
		accessLog(t, px)
		raw := r24AllocsGET("GET", "/items/42", "X-Request-Id: 3f2a9c1d0b8e7a65c4d2e1f0a9b8c7d6\r\n")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("forwarding all four, client's X-Forwarded-For and X-Request-Id", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "preserve_host: false\nforwarding: { x_forwarded_for: append, x_forwarded_proto: true, x_forwarded_host: true, request_id: true }\n", ok(t), ok(t)))
		raw := r24AllocsGET("GET", "/", "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: forged.example\r\nX-Request-Id: rid-1\r\n")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("forwarding x_forwarded_for replace", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "forwarding: { x_forwarded_for: replace }\n", ok(t)))
		raw := r24AllocsGET("GET", "/", "X-Forwarded-For: 198.51.100.7\r\n")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("no backend 503", func(t *testing.T) {
		_, c := start(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ok(t)+", weight: 0 }\n")
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{503}) })
	})
	t.Run("no backend 503, access log", func(t *testing.T) {
		px, c := start(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ok(t)+", weight: 0 }\n")
		accessLog(t, px)
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{503}) })
	})
	t.Run("route miss 404, access log", func(t *testing.T) {
		px, c := start(t, "routes:\n  - match: { host: other.example }\n    pool: p\npools:\n  p:\n    backends:\n      - { address: "+ok(t)+" }\n")
		accessLog(t, px)
		raw := r24AllocsGET("GET", "/x", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{404}) })
	})
	t.Run("backend 500 passed on, outlier detection counting", func(t *testing.T) {
		bad := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"))
		_, c := start(t, r24AllocsYAML("    outlier_detection: { consecutive_failures: 1000000, base_ejection_time: 1s }\n", "", bad, ok(t)))
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200, 500}) })
	})
	t.Run("outlier detection ejecting and readmitting", func(t *testing.T) {
		bad := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"))
		_, c := start(t, r24AllocsYAML("    outlier_detection: { consecutive_failures: 3, base_ejection_time: 50ms, max_ejection_time: 50ms, max_ejection_percent: 50 }\n", "", bad, ok(t), ok(t)))
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 600*time.Millisecond, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200, 500}) })
	})
	t.Run("304 and 204", func(t *testing.T) {
		nm := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=60\r\n\r\n"))
		nc := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 204 No Content\r\nX-Thing: 1\r\n\r\n"))
		_, c := start(t, r24AllocsYAML("", "", nm, nc))
		raw := r24AllocsGET("GET", "/", "If-None-Match: \"v1\"\r\n")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{304, 204}) })
	})
	t.Run("HEAD", func(t *testing.T) {
		long := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n"+strings.Repeat("h", 65536)))
		_, c := start(t, r24AllocsYAML("", "", long))
		raw := r24AllocsGET("HEAD", "/big", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, true, r24AllocsWant{200}) })
	})
	t.Run("chunked response", func(t *testing.T) {
		ch := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
		_, c := start(t, r24AllocsYAML("", "", ch))
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("POST with Content-Length 2 KiB", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "", ok(t)))
		raw := []byte("POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("p", 2048))
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("Expect 100-continue upload", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "", ok(t)))
		head := []byte("PUT /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n")
		body := bytes.Repeat([]byte("e"), 2048)
		r24AllocsRun(t, warm, n, 0, func() { c.continued(head, body, r24AllocsWant{200}) })
	})
	t.Run("103 Early Hints passed on", func(t *testing.T) {
		eh := r24AllocsBackend(t, r24AllocsFixed("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"+r24AllocsOK))
		_, c := start(t, r24AllocsYAML("", "", eh))
		raw := r24AllocsGET("GET", "/", "")
		// The 103 reaches the client (the answers below skip it).
		if _, err := c.c.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := c.interim.Read(c.br); err != nil || c.interim.StatusCode() != fasthttp.StatusEarlyHints {
			t.Fatalf("first answer: %v, status %d, want 103", err, c.interim.StatusCode())
		}
		if err := c.resp.Read(c.br); err != nil || c.resp.StatusCode() != 200 {
			t.Fatalf("final answer: %v, status %d, want 200", err, c.resp.StatusCode())
		}
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("pipelined 4 GETs", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "", ok(t), ok(t)))
		one := r24AllocsGET("GET", "/p", "")
		raw := bytes.Repeat(one, 4)
		r24AllocsRun(t, warm, n/4, 0, func() { c.roundTrip(raw, 4, false, r24AllocsWant{200}) })
	})
	t.Run("60 request fields", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("", "", ok(t)))
		var extra strings.Builder
		for i := range 60 {
			fmt.Fprintf(&extra, "X-Field-%02d: value %d\r\n", i, i)
		}
		raw := r24AllocsGET("GET", "/", extra.String())
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	t.Run("60 response fields", func(t *testing.T) {
		var head strings.Builder
		head.WriteString("HTTP/1.1 200 OK\r\n")
		for i := range 60 {
			fmt.Fprintf(&head, "X-Field-%02d: value %d\r\n", i, i)
		}
		head.WriteString("Content-Length: 2\r\n\r\nok")
		many := r24AllocsBackend(t, r24AllocsFixed(head.String()))
		_, c := start(t, r24AllocsYAML("", "", many))
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
	})
	stickyYAML := func(t *testing.T) string {
		return r24AllocsYAML("    sticky: { cookie: aff, secret: s3cret }\n", "", ok(t), ok(t))
	}
	t.Run("sticky cookie set", func(t *testing.T) {
		_, c := start(t, stickyYAML(t))
		raw := r24AllocsGET("GET", "/", "")
		r24AllocsRun(t, warm, n, 0, func() {
			c.roundTrip(raw, 1, false, r24AllocsWant{200})
			if len(c.resp.Header.PeekCookie("aff")) == 0 {
				t.Fatal("no affinity cookie set")
			}
		})
	})
	t.Run("sticky cookie honoured", func(t *testing.T) {
		_, c := start(t, stickyYAML(t))
		c.roundTrip(r24AllocsGET("GET", "/", ""), 1, false, r24AllocsWant{200})
		var ck fasthttp.Cookie
		if err := ck.ParseBytes(c.resp.Header.PeekCookie("aff")); err != nil {
			t.Fatalf("affinity cookie: %v", err)
		}
		raw := r24AllocsGET("GET", "/", "Cookie: other=1; aff="+string(ck.Value())+"\r\n")
		r24AllocsRun(t, warm, n, 0, func() {
			c.roundTrip(raw, 1, false, r24AllocsWant{200})
			if len(c.resp.Header.PeekCookie("aff")) != 0 {
				t.Fatal("affinity cookie set again")
			}
		})
	})
	t.Run("slow start ramping", func(t *testing.T) {
		a, b := ok(t), ok(t)
		px, c := start(t, r24AllocsYAML("    slow_start: 30s\n", "", a))
		cfg, err := config.Parse("test.yaml", []byte(r24AllocsYAML("    slow_start: 30s\n", "", a, b)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := px.ctrl.Apply(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		raw := r24AllocsGET("GET", "/", "")
		r := r24AllocsRun(t, warm, n, 600*time.Millisecond, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
		if r.control == 0 {
			t.Errorf("the control plane allocated nothing during the measurement: slow start not ramping")
		}
	})
	t.Run("health checks running", func(t *testing.T) {
		_, c := start(t, r24AllocsYAML("    health_check: { interval: 50ms, timeout: 1s, path: /healthz }\n", "", ok(t), ok(t)))
		raw := r24AllocsGET("GET", "/", "")
		r := r24AllocsRun(t, warm, n, 600*time.Millisecond, func() { c.roundTrip(raw, 1, false, r24AllocsWant{200}) })
		if r.control == 0 {
			t.Errorf("the control plane allocated nothing during the measurement: no probes running")
		}
	})
}
