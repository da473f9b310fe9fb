package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// Session 24 review of the upstream client's failure handling: each kind
// of backend failure, for an idempotent and a non-idempotent request, and
// what the client, the access log and the metrics see.

// r24UpMode is how a r24UpBackend treats a request.
type r24UpMode int32

const (
	r24UpOK               r24UpMode = iota
	r24UpResetHead                  // part of a head, then RST
	r24UpResetBody                  // head and part of the body, then RST
	r24UpCloseAfterHead             // head (Content-Length: 100), then FIN
	r24UpHalfClose                  // shut the sending side, read on
	r24UpSlowHead                   // nothing, read on until closed
	r24UpSlowBody                   // head and part of the body, then nothing
	r24UpIdleClose                  // answer; close (FIN) after 60 ms idle
	r24UpIdleReset                  // answer; reset after 60 ms idle
	r24UpAnswerReset                // answer, then reset at once
	r24UpSlowMidHead                // part of a head, then nothing
	r24UpSlowAfterInterim           // a 100 Continue, then nothing
	r24UpSecondReset                // answer a connection's first request; read the next, then RST
	r24UpBigBody                    // base of the modes below: + cut (0 RST, 1 FIN, 2 stall) + 3*size
)

// r24UpBigSizes are the announced lengths of the big-body modes: a
// spliced body (32 KiB to 1 MiB) and a longer one.
var r24UpBigSizes = [...]int{200_000, 3_000_000}

// r24UpBackend is a raw HTTP/1.1 backend on loopback that counts, by
// X-Request-Id, how many times each request reached it.
type r24UpBackend struct {
	ln   net.Listener
	mode atomic.Int32
	mu   sync.Mutex
	seen map[string]int
}

func r24UpStart(t *testing.T, mode r24UpMode) *r24UpBackend {
	t.Helper()
	b := &r24UpBackend{seen: map[string]int{}}
	b.mode.Store(int32(mode))
	b.ln = serveRaw(t, b.serve)
	return b
}

func (b *r24UpBackend) addr() string { return b.ln.Addr().String() }

func (b *r24UpBackend) times(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}

const r24UpOKAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func (b *r24UpBackend) serve(c net.Conn) {
	br := bufio.NewReader(c)
	tc := c.(*net.TCPConn)
	for first := true; ; first = false {
		mode := r24UpMode(b.mode.Load())
		if !first && (mode == r24UpIdleClose || mode == r24UpIdleReset) {
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Millisecond))
			if _, err := br.Peek(1); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && mode == r24UpIdleReset {
					_ = tc.SetLinger(0)
				}
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		}
		var req fasthttp.Request
		if err := req.Read(br); err != nil {
			return
		}
		b.mu.Lock()
		b.seen[string(req.Header.Peek("X-Request-Id"))]++
		b.mu.Unlock()
		if mode >= r24UpBigBody {
			k := int(mode - r24UpBigBody)
			n := r24UpBigSizes[k/3]
			if !write(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)) || !write(c, strings.Repeat("x", n/3)) {
				return
			}
			time.Sleep(20 * time.Millisecond)
			switch k % 3 {
			case 0:
				_ = tc.SetLinger(0)
			case 2:
				_, _ = io.Copy(io.Discard, c)
			}
			return
		}
		switch mode {
		case r24UpOK, r24UpIdleClose, r24UpIdleReset:
			if !write(c, r24UpOKAnswer) {
				return
			}
		case r24UpSecondReset:
			if !first {
				_ = tc.SetLinger(0)
				return
			}
			if !write(c, r24UpOKAnswer) {
				return
			}
		case r24UpAnswerReset:
			_ = write(c, r24UpOKAnswer)
			_ = tc.SetLinger(0)
			return
		case r24UpResetHead:
			_ = write(c, "HTTP/1.1 200 OK\r\nContent-Le")
			time.Sleep(20 * time.Millisecond)
			_ = tc.SetLinger(0)
			return
		case r24UpResetBody:
			_ = write(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
			time.Sleep(20 * time.Millisecond)
			_ = tc.SetLinger(0)
			return
		case r24UpCloseAfterHead:
			_ = write(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
			return
		case r24UpHalfClose:
			_ = tc.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
			return
		case r24UpSlowHead:
			_, _ = io.Copy(io.Discard, c)
			return
		case r24UpSlowMidHead:
			_ = write(c, "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
			_, _ = io.Copy(io.Discard, c)
			return
		case r24UpSlowAfterInterim:
			_ = write(c, "HTTP/1.1 100 Continue\r\n\r\n")
			_, _ = io.Copy(io.Discard, c)
			return
		case r24UpSlowBody:
			_ = write(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
			_, _ = io.Copy(io.Discard, c)
			return
		}
	}
}

// r24UpDo sends one request with X-Request-Id id on a new client
// connection to the proxy and returns the status and body (status 0 and
// the error as body when no answer came).
func r24UpDo(t *testing.T, addr, method, id string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(8 * time.Second))
	body := ""
	if method == "POST" || method == "PATCH" || method == "PUT" {
		body = "hello"
	}
	fmt.Fprintf(c, "%s /r HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s", method, id, len(body), body)
	req, _ := http.NewRequest(method, "http://x/r", nil)
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// r24UpProxy starts the proxy with an access log and metrics.
type r24UpProxy struct {
	*testProxy
	m    *metrics.Metrics
	al   *accesslog.Logger
	path string
}

func r24UpStartProxy(t *testing.T, y string) *r24UpProxy {
	t.Helper()
	m := metrics.New("test")
	px := startProxyWith(t, y, m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	t.Cleanup(func() { px.proxy.SetAccessLog(nil); _ = al.Close() })
	return &r24UpProxy{testProxy: px, m: m, al: al, path: path}
}

// lines closes the access log and returns its lines by request_id.
func (p *r24UpProxy) lines(t *testing.T) map[string]map[string]any {
	t.Helper()
	p.proxy.SetAccessLog(nil)
	if err := p.al.Close(); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, l := range accessLogLines(t, p.path) {
		id, _ := l["request_id"].(string)
		out[id] = l
	}
	return out
}

// upstreamErrors is sluice_upstream_errors_total by kind, summed over
// backends.
func (p *r24UpProxy) upstreamErrors(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range gatherCounts(t, p.m, "sluice_upstream_errors_total") {
		i := strings.Index(k, `kind="`)
		if i < 0 || v == 0 {
			continue
		}
		out[strings.TrimSuffix(k[i+len(`kind="`):], `"`)] += v
	}
	return out
}

// settle waits until no backend has a request in flight or an open
// upstream connection (the idle ones swept after upstream_idle), and
// the sluice_upstream_connections gauge says 0.
func (p *r24UpProxy) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Second)
	for {
		busy := ""
		for _, pl := range p.proxy.Current().pools {
			for _, up := range pl.targets {
				if n, f := up.client.ConnsCount(), up.backend.InFlight(); n != 0 || f != 0 || up.client.InFlight() != 0 {
					busy += fmt.Sprintf(" %s: %d conns, %d in flight;", up.backend.Addr, n, f)
				}
			}
		}
		for k, v := range gatherCounts(t, p.m, "sluice_upstream_connections") {
			if v != 0 {
				busy += fmt.Sprintf(" gauge %s = %v;", k, v)
			}
		}
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("upstream state did not return to zero:%s", busy)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func r24UpFds() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestUpFailureMatrix: every kind of backend failure, for a GET
// and a POST, against a pool of two backends failing alike (retries:
// attempts 2): the status (README, Error codes), whether it was retried
// (README, Retries: only when the request never left, or for an
// idempotent one when the connection broke; never a timeout), the access
// log's upstream_error and attempts, sluice_upstream_errors_total's kind,
// how many times the POST reached a backend (once at most), and that the
// in-flight counts and upstream connections return to zero.
func TestUpFailureMatrix(t *testing.T) {
	type want struct {
		status   int
		kind     string // access log
		attempts int
		metric   string // sluice_upstream_errors_total kind
		sends    int    // times the request reached a backend, in all
	}
	cases := []struct {
		name      string
		mode      r24UpMode
		get, post want
	}{
		{"refused", -1, want{502, "connect", 2, "connect", 0}, want{502, "connect", 2, "connect", 0}},
		{"connect timeout", -2, want{504, "connect_timeout", 2, "connect", 0}, want{504, "connect_timeout", 2, "connect", 0}},
		{"reset mid-head", r24UpResetHead, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"reset mid-body", r24UpResetBody, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"close after head", r24UpCloseAfterHead, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"half-close", r24UpHalfClose, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"slow head", r24UpSlowHead, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
		{"slow mid-head", r24UpSlowMidHead, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
		{"slow after 100", r24UpSlowAfterInterim, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
		{"spliced body reset", r24UpBigBody + 0, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"spliced body close", r24UpBigBody + 1, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"spliced body stall", r24UpBigBody + 2, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
		{"long body reset", r24UpBigBody + 3, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"long body close", r24UpBigBody + 4, want{502, "reset", 2, "reset", 2}, want{502, "reset", 1, "reset", 1}},
		{"long body stall", r24UpBigBody + 5, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
		{"slow body", r24UpSlowBody, want{504, "timeout", 1, "timeout", 1}, want{504, "timeout", 1, "timeout", 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var addrs [2]string
			var bs []*r24UpBackend
			for i := range addrs {
				switch tc.mode {
				case -1:
					addrs[i] = freeAddr(t)
				case -2:
					ln, _ := fullBacklogListener(t)
					addrs[i] = ln.Addr().String()
				default:
					b := r24UpStart(t, tc.mode)
					bs = append(bs, b)
					addrs[i] = b.addr()
				}
			}
			px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 400ms, upstream_idle: 200ms }
retries: { attempts: 2 }
routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
`, addrs[0], addrs[1]))
			fds := r24UpFds()
			check := func(method, id string, w want) {
				before := px.upstreamErrors(t)
				status, body := r24UpDo(t, px.addr, method, id)
				if status != w.status {
					t.Errorf("%s: status %d %q, want %d", method, status, body, w.status)
				}
				sends := 0
				for _, b := range bs {
					sends += b.times(id)
				}
				if sends != w.sends {
					t.Errorf("%s reached a backend %d times, want %d", method, sends, w.sends)
				}
				after := px.upstreamErrors(t)
				for k, v := range after {
					if d := v - before[k]; d != 0 && k != w.metric {
						t.Errorf("%s: sluice_upstream_errors_total{kind=%q} +%v, want only kind %q", method, k, d, w.metric)
					}
				}
				if d := after[w.metric] - before[w.metric]; d != float64(w.attempts) {
					t.Errorf("%s: sluice_upstream_errors_total{kind=%q} +%v, want +%d", method, w.metric, d, w.attempts)
				}
			}
			check("GET", "g1", tc.get)
			check("POST", "p1", tc.post)
			px.settle(t)
			lines := px.lines(t)
			for id, w := range map[string]want{"g1": tc.get, "p1": tc.post} {
				l, ok := lines[id]
				if !ok {
					// An id the client sent is logged only if the request
					// was sent (README, access log request_id).
					for _, ll := range lines {
						if ll["method"] == map[string]string{"g1": "GET", "p1": "POST"}[id] {
							l, ok = ll, true
						}
					}
				}
				if !ok {
					t.Errorf("%s: no access log line in %v", id, lines)
					continue
				}
				if l["upstream_error"] != w.kind || l["attempts"] != float64(w.attempts) || l["status"] != float64(w.status) {
					t.Errorf("%s: access log status %v upstream_error %v attempts %v, want %d %q %d", id, l["status"], l["upstream_error"], l["attempts"], w.status, w.kind, w.attempts)
				}
			}
			if n := r24UpFds() + 1; n > fds { // the access log, closed
				// Give closes a moment (the backends' handlers).
				time.Sleep(100 * time.Millisecond)
				if n = r24UpFds() + 1; n > fds {
					t.Errorf("open descriptors %d after, %d before the requests", n, fds)
				}
			}
		})
	}
}

// TestUpKeepAliveCloses: a backend that closes or resets its
// kept-alive connections while they are idle (keep-alive timeout shorter
// than upstream_idle), or resets each connection right after answering,
// costs no request its answer, POSTs included, and no request reaches it
// twice (README, Idle upstream connections: the idle check, "safe for
// any method"; a backend "closed on its keep-alive timeout would fail a
// POST with 502" without it). Such closes count as kind="idle" at most,
// never as failures.
func TestUpKeepAliveCloses(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode r24UpMode
	}{
		{"idle close", r24UpIdleClose},
		{"idle reset", r24UpIdleReset},
		{"answer then reset", r24UpAnswerReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := r24UpStart(t, tc.mode)
			px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 1s, upstream_idle: 2s }
retries: { attempts: 1 }
routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
`, b.addr()))
			fds := r24UpFds()
			for i := range 6 {
				for _, m := range []string{"POST", "GET", "PATCH"} {
					id := fmt.Sprintf("%s-%d", m, i)
					if status, body := r24UpDo(t, px.addr, m, id); status != 200 || body != "ok" {
						t.Errorf("%s: %d %q, want 200 ok", id, status, body)
					}
					if n := b.times(id); n != 1 {
						t.Errorf("%s reached the backend %d times, want 1", id, n)
					}
				}
				time.Sleep(120 * time.Millisecond) // past the backend's 60 ms keep-alive
			}
			for k, v := range px.upstreamErrors(t) {
				if k != "idle" {
					t.Errorf("sluice_upstream_errors_total{kind=%q} = %v, want none but idle", k, v)
				}
			}
			for id, l := range px.lines(t) {
				if l["upstream_error"] != "" || l["attempts"] != float64(1) {
					t.Errorf("%s: access log upstream_error %v attempts %v, want \"\" 1", id, l["upstream_error"], l["attempts"])
				}
			}
			// The idle connection left (upstream_idle is 2 s) closed now:
			// then nothing is open or in flight, and no descriptor is left.
			px.proxy.Current().pools["p"].targets[0].client.closeIdle(0)
			px.settle(t)
			waitFor(t, "descriptors back", 3*time.Second, func() bool { return r24UpFds()+1 <= fds }) // +1: the access log, closed
		})
	}
}

// TestUpMixedFaultsUnderLoad: many clients at once against two
// backends that fail each request in a way drawn at random (every mode
// above), with max_conns_per_backend below the clients' count: every
// client gets an answer (200, 502, 503 or 504), no POST or PATCH reaches
// a backend twice, and the in-flight counts, upstream connections and
// descriptors return to where they were.
func TestUpMixedFaultsUnderLoad(t *testing.T) {
	bs := []*r24UpBackend{r24UpStart(t, r24UpOK), r24UpStart(t, r24UpOK)}
	var draw atomic.Uint64
	modes := []r24UpMode{r24UpOK, r24UpOK, r24UpOK, r24UpResetHead, r24UpResetBody,
		r24UpCloseAfterHead, r24UpHalfClose, r24UpSlowHead, r24UpSlowBody, r24UpIdleClose,
		r24UpIdleReset, r24UpAnswerReset, r24UpSlowMidHead, r24UpBigBody, r24UpBigBody + 1}
	// Each backend's mode turns as requests come (the mode is read per
	// request, so a connection's requests differ).
	stop := make(chan struct{})
	var turner sync.WaitGroup
	turner.Add(1)
	go func() {
		defer turner.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			for _, b := range bs {
				b.mode.Store(int32(modes[(draw.Add(0x9E3779B97F4A7C15)>>33)%uint64(len(modes))]))
			}
		}
	}()
	px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 300ms, upstream_idle: 150ms }
limits: { max_conns_per_backend: 6 }
retries: { attempts: 2 }
routes: [{ pool: p }]
pools:
  p: { algorithm: least_conn, backends: [{ address: %s }, { address: %s }] }
`, bs[0].addr(), bs[1].addr()))
	fds := r24UpFds()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				method := [...]string{"GET", "POST", "PATCH", "PUT"}[(w+i)%4]
				id := fmt.Sprintf("%s-%d-%d", method, w, i)
				status, _ := r24UpDo(t, px.addr, method, id)
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				if method == "POST" || method == "PATCH" {
					if n := bs[0].times(id) + bs[1].times(id); n > 1 {
						t.Errorf("%s reached the backends %d times, want at most 1", id, n)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	turner.Wait()
	t.Logf("statuses: %v", statuses)
	for s := range statuses {
		switch s {
		case 200, 502, 503, 504:
		default:
			t.Errorf("%d answers with status %d", statuses[s], s)
		}
	}
	px.settle(t)
	waitFor(t, "descriptors back", 3*time.Second, func() bool { return r24UpFds() <= fds })
}

// TestUpLargeUploadFailures: a POST body far larger than the
// socket buffers, to a backend that never reads it, or reads part of it
// and then closes or resets: the client gets 504 (timeout) or 502
// (reset), with the matching access log kind and metric, and the
// upstream state returns to zero.
func TestUpLargeUploadFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(c net.Conn)
		status int
		kind   string
		metric string
	}{
		{"never read", func(c net.Conn) {
			// Hold the connection, reading nothing, past the response
			// timeout (serveRaw closes it after).
			time.Sleep(1500 * time.Millisecond)
		}, 504, "timeout", "timeout"},
		{"read part then close", func(c net.Conn) {
			_, _ = io.CopyN(io.Discard, c, 256<<10)
		}, 502, "reset", "reset"},
		{"read part then reset", func(c net.Conn) {
			_, _ = io.CopyN(io.Discard, c, 256<<10)
			_ = c.(*net.TCPConn).SetLinger(0)
		}, 502, "reset", "reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := serveRaw(t, tc.handle)
			px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 700ms, upstream_idle: 200ms }
retries: { attempts: 2 }
limits: { max_body_bytes: 33554432 }
routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
`, ln.Addr()))
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(8 * time.Second))
			const n = 16 << 20
			go func() {
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nX-Request-Id: up1\r\nContent-Length: %d\r\n\r\n", n)
				_, _ = c.Write(make([]byte, n))
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			errs := px.upstreamErrors(t)
			if len(errs) != 1 || errs[tc.metric] != 1 {
				t.Errorf("sluice_upstream_errors_total = %v, want one of kind %q", errs, tc.metric)
			}
			px.settle(t)
			l := px.lines(t)["up1"]
			if l["upstream_error"] != tc.kind || l["attempts"] != float64(1) {
				t.Errorf("access log upstream_error %v attempts %v, want %q 1", l["upstream_error"], l["attempts"], tc.kind)
			}
		})
	}
}

// TestUpRestartBetweenRequests: a backend restarted on the same
// port between requests leaves every kept-alive connection to it dead;
// the next POSTs, several at once, are each answered 200 and reach it
// once (README, Idle upstream connections), with no failure counted
// but kind="idle", and the state returns to zero.
func TestUpRestartBetweenRequests(t *testing.T) {
	b := newModalBackend(t, "a")
	px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 2s, upstream_idle: 5s }
retries: { attempts: 1 }
routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
`, b.addr))
	post := func(round int) {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, body := r24UpDo(t, px.addr, "POST", fmt.Sprintf("r%d-%d", round, i)); status != 200 {
					t.Errorf("round %d POST %d: %d %q, want 200", round, i, status, body)
				}
			}()
		}
		wg.Wait()
	}
	post(0)
	for round := 1; round <= 3; round++ {
		b.kill()
		b.restart(t)
		before := b.traffic.Load()
		post(round)
		if got := b.traffic.Load() - before; got != 6 {
			t.Errorf("round %d: the backend got %d POSTs, want 6", round, got)
		}
	}
	for k, v := range px.upstreamErrors(t) {
		if k != "idle" {
			t.Errorf("sluice_upstream_errors_total{kind=%q} = %v, want none but idle", k, v)
		}
	}
	b.kill()
	px.proxy.Current().pools["p"].targets[0].client.closeIdle(0)
	px.settle(t)
}

// TestUpPostResetOnReusedConnNotRetried pins what README's
// Retries section says ("A connection that broke after the request was
// sent is retried only for idempotent methods"): a POST that a backend
// read on a kept-alive connection and then reset, with no answer, gets
// 502 and is not sent to the other backend, though retries.attempts is
// 2. (The "Idle upstream connections" paragraph says such failures of a
// POST or a PATCH get "502, or a retry on another backend under
// retries": the second half never happens. Passes; a wording point.)
func TestUpPostResetOnReusedConnNotRetried(t *testing.T) {
	a, b := r24UpStart(t, r24UpSecondReset), r24UpStart(t, r24UpOK)
	px := r24UpStartProxy(t, fmt.Sprintf(`timeouts: { connect: 300ms, response: 2s, upstream_idle: 5s }
retries: { attempts: 2 }
routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
`, a.addr(), b.addr()))
	for i := range 2 { // one to each: a keeps its connection idle
		if status, _ := r24UpDo(t, px.addr, "GET", fmt.Sprintf("warm%d", i)); status != 200 {
			t.Fatalf("warm-up GET: %d", status)
		}
	}
	for i := range 4 {
		id := fmt.Sprintf("post%d", i)
		status, body := r24UpDo(t, px.addr, "POST", id)
		if a.times(id) == 0 {
			continue // went to b: try again
		}
		if status != 502 || b.times(id) != 0 {
			t.Errorf("POST reset by a on a reused connection: %d %q, b got it %d times; want 502, not sent to b", status, body, b.times(id))
		}
		l := px.lines(t)[id]
		if l["upstream_error"] != "reset" || l["attempts"] != float64(1) {
			t.Errorf("access log upstream_error %v attempts %v, want reset 1", l["upstream_error"], l["attempts"])
		}
		return
	}
	t.Fatal("no POST went to the resetting backend")
}
