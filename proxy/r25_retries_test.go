package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// r25RetriesRecv is one request a r25RetriesBackend read whole.
type r25RetriesRecv struct {
	method, path string
	body         []byte
	conn, turn   int // the connection's number (from 1) and the request's on it (from 1)
}

// r25RetriesBackend is a raw loopback backend whose behaviour per
// connection and per request on it is scripted by mode; it counts the
// connections it accepted and records each request it read whole.
type r25RetriesBackend struct {
	name  string
	ln    net.Listener
	conns atomic.Int64
	mu    sync.Mutex
	recvd []r25RetriesRecv
	// mode says what to do with request turn (from 1) of connection conn.
	mode func(conn, turn int) string
}

func (b *r25RetriesBackend) addr() string { return b.ln.Addr().String() }

func (b *r25RetriesBackend) received() []r25RetriesRecv {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]r25RetriesRecv(nil), b.recvd...)
}

// Modes:
//
//	ok          answer 200 (keep-alive), body "ok from NAME"
//	close       close without reading the request
//	rst         reset without reading the request
//	rstread     read the request whole, then reset
//	finread     read the request whole, then close (FIN)
//	halfhead    read the request, send half a head, close
//	midbody     read the request, send a head (Content-Length: 100) and 10 bytes, close
//	slow        read the request, answer nothing until the proxy closes
//	5xx         read the request, answer 503 with a body (keep-alive)
//	rstmidbody  read the head and 1000 bytes of the body, then reset
//	peekrst     wait for the request's first byte, then reset
//	finmidbody  read the head and 1000 bytes of the body, shut the
//	            sending side (FIN), read no more for 500 ms, close
func r25RetriesStart(t *testing.T, name string, mode func(conn, turn int) string) *r25RetriesBackend {
	t.Helper()
	b := &r25RetriesBackend{name: name, mode: mode}
	var n atomic.Int64
	b.ln = serveRaw(t, func(c net.Conn) {
		conn := int(n.Add(1))
		b.conns.Add(1)
		br := bufio.NewReader(c)
		for turn := 1; ; turn++ {
			m := b.mode(conn, turn)
			switch m {
			case "close":
				return
			case "rst":
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case "peekrst":
				if _, err := br.Peek(1); err != nil {
					return
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case "finmidbody":
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.ReadFull(req.Body, make([]byte, 1000))
				_ = c.(*net.TCPConn).CloseWrite()
				time.Sleep(500 * time.Millisecond) // reading no more
				return
			case "rstmidbody":
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.ReadFull(req.Body, make([]byte, 1000))
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			b.mu.Lock()
			b.recvd = append(b.recvd, r25RetriesRecv{req.Method, req.URL.Path, body, conn, turn})
			b.mu.Unlock()
			switch m {
			case "ok":
				msg := "ok from " + name
				if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n%s", name, len(msg), msg); err != nil {
					return
				}
			case "5xx":
				msg := "busy " + name
				if _, err := fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nX-Backend: %s\r\nContent-Length: %d\r\n\r\n%s", name, len(msg), msg); err != nil {
					return
				}
			case "rstread":
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case "finread":
				return
			case "halfhead":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Half: 1\r\nContent-Le")
				return
			case "midbody":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Partial: "+name+"\r\nContent-Length: 100\r\n\r\n0123456789")
				return
			case "slow":
				_, _ = io.Copy(io.Discard, br) // until the proxy gives up and closes
				return
			default:
				panic("unknown mode " + m)
			}
		}
	})
	return b
}

// r25RetriesSmallRcvBuf gives the connections b accepts from now on
// a receive buffer of 4 KiB (set on the listening socket, which they
// inherit it from), so that a long upload waits for room.
func r25RetriesSmallRcvBuf(t *testing.T, b *r25RetriesBackend) {
	t.Helper()
	rc, err := b.ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
}

// r25RetriesAnswer is what the client got.
type r25RetriesAnswer struct {
	code   int
	header http.Header
	body   string
	err    error
}

// r25RetriesDo sends one request on a new connection (Connection:
// close): body nil means none; chunked frames it in chunks of 4 KiB.
func r25RetriesDo(t *testing.T, addr, method, path string, body []byte, chunked bool) r25RetriesAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(8 * time.Second))
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", method, path)
	switch {
	case body == nil:
	case chunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		fmt.Fprintf(&w, "Content-Length: %d\r\n", len(body))
	}
	w.WriteString("\r\n")
	if chunked && body != nil {
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 4096)
			fmt.Fprintf(&w, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		w.WriteString("0\r\n\r\n")
	} else {
		w.Write(body)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Write(w.Bytes()); done <- err }()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		<-done
		return r25RetriesAnswer{err: err}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.Close()
	<-done
	return r25RetriesAnswer{code: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// r25RetriesRig is a proxy with metrics and the access log on.
type r25RetriesRig struct {
	px  *testProxy
	m   *metrics.Metrics
	al  *accesslog.Logger
	log string
}

func r25RetriesProxy(t *testing.T, yml string) *r25RetriesRig {
	t.Helper()
	m := metrics.New("test")
	px := startProxyWith(t, yml, m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	t.Cleanup(func() { px.proxy.SetAccessLog(nil); _ = al.Close() })
	return &r25RetriesRig{px: px, m: m, al: al, log: path}
}

// lines closes the access log and returns its lines.
func (r *r25RetriesRig) lines(t *testing.T) []map[string]any {
	t.Helper()
	r.px.proxy.SetAccessLog(nil)
	if err := r.al.Close(); err != nil {
		t.Fatal(err)
	}
	return accessLogLines(t, r.log)
}

func (r *r25RetriesRig) sum(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	s := 0.0
	for k, v := range gatherCounts(t, r.m, name) {
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(k, m)
		}
		if ok {
			s += v
		}
	}
	return s
}

var r25RetriesMethods = []string{"GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS"}

func r25RetriesIdempotent(m string) bool { return m != "POST" && m != "PATCH" }

// r25RetriesBodies are the request bodies each method is tried with.
var r25RetriesBodies = []struct {
	name    string
	body    []byte
	chunked bool
}{
	{"none", nil, false},
	{"small", []byte("hello body"), false},
	{"chunked", bytes.Repeat([]byte("chunk-data."), 1000), true},
}

// TestRetriesFailureMatrix: two backends failing the same way
// (retries.attempts 3) for each method with and without a body: how many
// times the request reached each backend, the status, the access log's
// attempts / upstream_error / upstream_addr, and sluice_retries_total and
// sluice_upstream_errors_total, against README's Retries and Errors.
func TestRetriesFailureMatrix(t *testing.T) {
	type want struct {
		code int
		// sendsIdem / sendsOther: total requests read whole by the two
		// backends (-1: not checked)
		sendsIdem, sendsOther int
		attemptsIdem          int
		attemptsOther         int // -1: either 1 or 2 (a race README allows)
		errName               string
		metricKind            string
	}
	modes := []struct {
		mode string
		want want
	}{
		{"refuse", want{502, 0, 0, 2, 2, "connect", "connect"}},
		{"close", want{502, 0, 0, 2, -1, "", ""}},
		{"rstread", want{502, 2, 1, 2, 1, "reset", "reset"}},
		{"finread", want{502, 2, 1, 2, 1, "reset", "reset"}},
		{"halfhead", want{502, 2, 1, 2, 1, "reset", "reset"}},
		{"midbody", want{502, 2, 1, 2, 1, "reset", "reset"}},
		{"5xx", want{503, 1, 1, 1, 1, "", ""}},
		{"slow", want{504, 1, 1, 1, 1, "timeout", "timeout"}},
	}
	for _, md := range modes {
		t.Run(md.mode, func(t *testing.T) {
			var a, b string
			var backs []*r25RetriesBackend
			if md.mode == "refuse" {
				a, b = freeAddr(t), freeAddr(t)
			} else {
				for _, n := range []string{"a", "b"} {
					bk := r25RetriesStart(t, n, func(int, int) string { return md.mode })
					backs = append(backs, bk)
				}
				a, b = backs[0].addr(), backs[1].addr()
			}
			rig := r25RetriesProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 3 }
timeouts: { connect: 1s, response: 300ms }
`, a, b))
			type sent struct {
				method, path string
				body         []byte
				ans          r25RetriesAnswer
				conns        int64
			}
			var all []sent
			for _, method := range r25RetriesMethods {
				if md.mode == "slow" && method != "GET" && method != "POST" {
					continue // each costs timeouts.response
				}
				for _, bd := range r25RetriesBodies {
					path := "/" + strings.ToLower(method) + "-" + bd.name
					before := int64(0)
					for _, bk := range backs {
						before += bk.conns.Load()
					}
					ans := r25RetriesDo(t, rig.px.addr, method, path, bd.body, bd.chunked)
					time.Sleep(30 * time.Millisecond) // the backends record after their read
					after := int64(0)
					for _, bk := range backs {
						after += bk.conns.Load()
					}
					all = append(all, sent{method, path, bd.body, ans, after - before})
				}
			}
			if md.mode == "5xx" {
				rig.settled(t)
			} else {
				rig.settled(t, a, b)
			}
			lines := rig.lines(t)
			if len(lines) != len(all) {
				t.Fatalf("%d access log lines, want %d", len(lines), len(all))
			}
			wantRetries, wantErrs := 0, 0
			for i, s := range all {
				id := s.method + " " + s.path
				w := md.want
				if md.mode == "midbody" && s.method == "HEAD" {
					// A head is the whole answer to a HEAD: the bytes
					// after it are extra, and the 200 goes through.
					w = want{200, 1, 1, 1, 1, "", ""}
				}
				idem := r25RetriesIdempotent(s.method)
				if s.ans.err != nil {
					t.Errorf("%s: %v", id, s.ans.err)
					continue
				}
				if s.ans.code != w.code {
					t.Errorf("%s: status %d %q, want %d", id, s.ans.code, s.ans.body, w.code)
				}
				// What reached the backends, and intact.
				var got []r25RetriesRecv
				var where []string
				for _, bk := range backs {
					for _, r := range bk.received() {
						if r.path == s.path {
							got = append(got, r)
							where = append(where, bk.addr())
							if r.method != s.method || !bytes.Equal(r.body, s.body) && !(s.body == nil && len(r.body) == 0) {
								t.Errorf("%s: backend %s got %s with a body of %d bytes, want %d", id, bk.name, r.method, len(r.body), len(s.body))
							}
						}
					}
				}
				wantSends := w.sendsOther
				if idem {
					wantSends = w.sendsIdem
				}
				if len(got) != wantSends {
					t.Errorf("%s: reached the backends %d times (on %v), want %d", id, len(got), where, wantSends)
				}
				if len(where) == 2 && where[0] == where[1] {
					t.Errorf("%s: sent twice to the same backend %s", id, where[0])
				}
				// The access log.
				l := lines[i]
				if l["path"] != s.path {
					t.Errorf("line %d is for %v, want %s", i, l["path"], s.path)
					continue
				}
				att := int(l["attempts"].(float64))
				wantAtt := w.attemptsOther
				if idem {
					wantAtt = w.attemptsIdem
				}
				if wantAtt >= 0 && att != wantAtt || wantAtt < 0 && (att < 1 || att > 2) {
					t.Errorf("%s: attempts %d, want %d (log %v)", id, att, wantAtt, l)
				}
				if int(l["status"].(float64)) != s.ans.code {
					t.Errorf("%s: logged status %v, client got %d", id, l["status"], s.ans.code)
				}
				if w.errName != "" && l["upstream_error"] != w.errName {
					t.Errorf("%s: upstream_error %q, want %q", id, l["upstream_error"], w.errName)
				}
				if w.code < 500 || md.mode == "5xx" {
					if l["upstream_error"] != "" {
						t.Errorf("%s: upstream_error %q, want none", id, l["upstream_error"])
					}
				}
				ua, _ := l["upstream_addr"].(string)
				if ua != a && ua != b {
					t.Errorf("%s: upstream_addr %q, want %s or %s", id, ua, a, b)
				}
				if len(got) > 0 && att == len(got) && ua != where[len(where)-1] && len(got) == 1 {
					t.Errorf("%s: upstream_addr %q, but only %s got the request", id, ua, where[0])
				}
				if md.mode != "refuse" && md.mode != "5xx" && s.conns != int64(att) && md.mode != "close" {
					t.Errorf("%s: backends accepted %d connections for %d attempts", id, s.conns, att)
				}
				// Client-facing error bodies.
				if w.code >= 500 && md.mode != "5xx" && s.method != "HEAD" && !strings.HasPrefix(s.ans.body, strconv.Itoa(w.code)+" ") {
					t.Errorf("%s: body %q, want sluice's %d text", id, s.ans.body, w.code)
				}
				if md.mode == "5xx" {
					if s.ans.header.Get("X-Backend") == "" || s.method != "HEAD" && !strings.HasPrefix(s.ans.body, "busy ") {
						t.Errorf("%s: the backend's 503 was not passed on: %v %q", id, s.ans.header, s.ans.body)
					}
				}
				if w.code >= 500 && (s.ans.header.Get("X-Partial") != "" || s.ans.header.Get("X-Half") != "") {
					t.Errorf("%s: a broken answer's header reached the client: %v", id, s.ans.header)
				}
				wantRetries += att - 1
				if w.code >= 500 && md.mode != "5xx" {
					wantErrs += att
				}
			}
			if got := rig.sum(t, "sluice_retries_total"); got != float64(wantRetries) {
				t.Errorf("sluice_retries_total = %v, want %d (attempts after the first, from the access log)", got, wantRetries)
			}
			errs := rig.sum(t, "sluice_upstream_errors_total")
			idle := rig.sum(t, "sluice_upstream_errors_total", `kind="idle"`)
			if errs-idle != float64(wantErrs) {
				t.Errorf("sluice_upstream_errors_total (but idle) = %v, want %d; all: %v", errs-idle, wantErrs, gatherCounts(t, rig.m, "sluice_upstream_errors_total"))
			}
			if md.want.metricKind != "" {
				if k := rig.sum(t, "sluice_upstream_errors_total", `kind="`+md.want.metricKind+`"`); k != float64(wantErrs) {
					t.Errorf("sluice_upstream_errors_total{kind=%q} = %v, want %d; all: %v", md.want.metricKind, k, wantErrs, gatherCounts(t, rig.m, "sluice_upstream_errors_total"))
				}
			}
		})
	}
}

// r25RetriesSHA names a body in messages.
func r25RetriesSHA(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b))[:12] }

// TestRetriesBodyIntactOnRetry: a request whose first attempt
// broke (on a backend that refused, closed, reset after reading all or
// part of the body, or sent half an answer) is retried on the good
// backend with its body whole: a short one (PUT, DELETE, OPTIONS, GET,
// POST, PATCH), and 1 MiB framed by Content-Length or chunked (PUT, GET,
// POST). Round robin sends one of each two requests to the bad
// backend first; an idempotent request then gets the good backend's 200
// both times, a POST or PATCH that reached the bad backend gets 502 and
// reaches the good one only in the other request.
func TestRetriesBodyIntactOnRetry(t *testing.T) {
	r25RetriesBodyIntact(t, "refuse", "close")
}

// TestRetriesBodyIntactOnRetryAfterReset is
// TestRetriesBodyIntactOnRetry for backends that reset after
// reading all or part of the request.
func TestRetriesBodyIntactOnRetryAfterReset(t *testing.T) {
	r25RetriesBodyIntact(t, "rstread", "rstmidbody")
}

// TestRetriesBodyIntactOnRetryAfterAnswerBegun is
// TestRetriesBodyIntactOnRetry for backends that closed after
// reading the request, or in the middle of their answer.
func TestRetriesBodyIntactOnRetryAfterAnswerBegun(t *testing.T) {
	r25RetriesBodyIntact(t, "finread", "halfhead", "midbody")
}

func r25RetriesBodyIntact(t *testing.T, modes ...string) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	bodies := []struct {
		name    string
		body    []byte
		chunked bool
	}{
		{"small", []byte("a short body"), false},
		{"1MiB", big, false},
		{"1MiB-chunked", big, true},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			good := r25RetriesStart(t, "good", func(int, int) string { return "ok" })
			var badAddr string
			var bad *r25RetriesBackend
			if mode == "refuse" {
				badAddr = freeAddr(t)
			} else {
				bad = r25RetriesStart(t, "bad", func(int, int) string { return mode })
				badAddr = bad.addr()
			}
			rig := r25RetriesProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
timeouts: { response: 3s }
limits: { max_body_bytes: 4194304 }
`, badAddr, good.addr()))
			for _, method := range []string{"PUT", "DELETE", "OPTIONS", "GET", "POST", "PATCH"} {
				for _, bd := range bodies {
					if len(bd.body) > 1000 && method != "PUT" && method != "GET" && method != "POST" {
						continue // (time: the long bodies go with three methods)
					}
					path := "/" + strings.ToLower(method) + "-" + bd.name
					codes := map[int]int{}
					for range 2 {
						ans := r25RetriesDo(t, rig.px.addr, method, path, bd.body, bd.chunked)
						if ans.err != nil {
							t.Errorf("%s %s: %v", method, path, ans.err)
							continue
						}
						codes[ans.code]++
						if ans.code == 200 && ans.body != "ok from good" {
							t.Errorf("%s %s: 200 with %q, want the good backend's answer", method, path, ans.body)
						}
					}
					time.Sleep(30 * time.Millisecond)
					goodGot := 0
					for _, r := range good.received() {
						if r.path != path {
							continue
						}
						goodGot++
						if !bytes.Equal(r.body, bd.body) {
							t.Errorf("%s %s: the good backend got a body of %d bytes (sha %s), want %d (sha %s)", method, path,
								len(r.body), r25RetriesSHA(r.body), len(bd.body), r25RetriesSHA(bd.body))
						}
					}
					badGot := 0
					if bad != nil {
						for _, r := range bad.received() {
							if r.path == path {
								badGot++
							}
						}
					}
					// Whether a POST that met a backend closing without
					// reading is sent again is a race README allows (its
					// kernel may have acknowledged the request).
					sentNot := mode == "refuse" || mode == "close"
					switch {
					case r25RetriesIdempotent(method) || mode == "refuse":
						if codes[200] != 2 || goodGot != 2 {
							t.Errorf("%s %s: answers %v, good backend got it %d times; want two 200s and 2", method, path, codes, goodGot)
						}
					case sentNot:
						if codes[200]+codes[502] != 2 || goodGot != codes[200] {
							t.Errorf("%s %s: answers %v, good backend got it %d times", method, path, codes, goodGot)
						}
					default:
						if codes[200] != 1 || codes[502] != 1 || goodGot != 1 {
							t.Errorf("%s %s: answers %v, good backend got it %d times; want one 200, one 502 and 1", method, path, codes, goodGot)
						}
					}
					if badGot > 1 {
						t.Errorf("%s %s: the bad backend read it whole %d times, want at most 1", method, path, badGot)
					}
				}
			}
			rig.settled(t, badAddr)
			lines := rig.lines(t)
			retries := 0
			for _, l := range lines {
				retries += int(l["attempts"].(float64)) - 1
				if l["status"].(float64) == 200 && l["upstream_addr"] != good.addr() {
					t.Errorf("%v %v: 200 logged with upstream_addr %v, want %s", l["method"], l["path"], l["upstream_addr"], good.addr())
				}
				if l["status"].(float64) == 200 && l["upstream_error"] != "" {
					t.Errorf("%v %v: 200 logged with upstream_error %v", l["method"], l["path"], l["upstream_error"])
				}
			}
			if got := rig.sum(t, "sluice_retries_total"); got != float64(retries) {
				t.Errorf("sluice_retries_total = %v, the access log's attempts say %d", got, retries)
			}
		})
	}
}

// TestRetriesReusedConn: the backend answers the first request on
// each connection and fails the second as mode says, so the request after
// a warm-up meets the failure on a reused connection (README, Idle
// upstream connections, and Retries). A pool of one, retries.attempts 2.
func TestRetriesReusedConn(t *testing.T) {
	r25RetriesReused(t, "close", "rst", "peekrst")
}

// TestRetriesReusedConnAfterRead is TestRetriesReusedConn
// for a backend that reads the request whole and then resets or closes.
func TestRetriesReusedConnAfterRead(t *testing.T) {
	r25RetriesReused(t, "rstread", "finread")
}

// TestRetriesReusedConnAnswerBegun is TestRetriesReusedConn
// for a backend that breaks off its answer, or answers 503.
func TestRetriesReusedConnAnswerBegun(t *testing.T) {
	r25RetriesReused(t, "halfhead", "midbody", "5xx")
}

func r25RetriesReused(t *testing.T, modes ...string) {
	type want struct {
		code        int // idempotent / other
		codeOther   int
		sends       int // requests read whole, warm-up excluded
		sendsOther  int
		attempts    int
		attemptsOth int
		idle        int // sluice_upstream_errors_total{kind="idle"}, idempotent
	}
	for _, tt := range []struct {
		mode string
		want want
	}{
		// Closed or reset while idle: found before the request went.
		{"close", want{200, 200, 1, 1, 1, 1, 1}},
		{"rst", want{200, 200, 1, 1, 1, 1, 1}},
		// Reset as the request arrives, none of it read: stale pass for
		// idempotent requests only.
		{"peekrst", want{200, 502, 1, 0, 1, 1, 1}},
		// Read whole, then reset or closed before any answer: likewise.
		{"rstread", want{200, 502, 2, 1, 1, 1, 1}},
		{"finread", want{200, 502, 2, 1, 1, 1, 1}},
		// An answer begun: a reset, retried as an attempt.
		{"halfhead", want{200, 502, 2, 1, 2, 1, 0}},
		{"midbody", want{200, 502, 2, 1, 2, 1, 0}},
		{"5xx", want{503, 503, 1, 1, 1, 1, 0}},
	} {
		if !slices.Contains(modes, tt.mode) {
			continue
		}
		t.Run(tt.mode, func(t *testing.T) {
			for _, method := range r25RetriesMethods {
				for _, bd := range r25RetriesBodies {
					w := tt.want
					idem := r25RetriesIdempotent(method)
					code, sends, att := w.code, w.sends, w.attempts
					if !idem {
						code, sends, att = w.codeOther, w.sendsOther, w.attemptsOth
					}
					if method == "HEAD" && tt.mode == "midbody" {
						code, sends, att = 200, 1, 1 // the head is the whole answer
					}
					mode := tt.mode
					b := r25RetriesStart(t, "b", func(conn, turn int) string {
						if turn == 1 {
							return "ok"
						}
						return mode
					})
					rig := r25RetriesProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
retries: { attempts: 2 }
timeouts: { response: 2s }
`, b.addr()))
					if ans := r25RetriesDo(t, rig.px.addr, "GET", "/warm", nil, false); ans.code != 200 {
						t.Fatalf("warm-up: %d %v", ans.code, ans.err)
					}
					time.Sleep(30 * time.Millisecond) // an idle close lands
					id := method + " " + bd.name
					path := "/" + strings.ToLower(method) + "-" + bd.name
					ans := r25RetriesDo(t, rig.px.addr, method, path, bd.body, bd.chunked)
					time.Sleep(30 * time.Millisecond)
					if ans.err != nil || ans.code != code {
						t.Errorf("%s: %d %q %v, want %d", id, ans.code, ans.body, ans.err, code)
					}
					got := 0
					for _, r := range b.received() {
						if r.path == path {
							got++
							if !bytes.Equal(r.body, bd.body) && !(bd.body == nil && len(r.body) == 0) {
								t.Errorf("%s: body of %d bytes, want %d", id, len(r.body), len(bd.body))
							}
						}
					}
					if got != sends {
						t.Errorf("%s: reached the backend %d times, want %d", id, got, sends)
					}
					lines := rig.lines(t)
					if len(lines) != 2 {
						t.Fatalf("%s: %d log lines", id, len(lines))
					}
					l := lines[1]
					if a := int(l["attempts"].(float64)); a != att {
						t.Errorf("%s: attempts %d, want %d", id, a, att)
					}
					if r := rig.sum(t, "sluice_retries_total"); r != float64(att-1) {
						t.Errorf("%s: sluice_retries_total %v, want %d", id, r, att-1)
					}
					if idem && tt.mode != "5xx" {
						if n := rig.sum(t, "sluice_upstream_errors_total", `kind="idle"`); n != float64(w.idle) {
							t.Errorf("%s: idle errors %v, want %d", id, n, w.idle)
						}
					}
					if code == 200 && l["upstream_error"] != "" {
						t.Errorf("%s: upstream_error %q on a 200", id, l["upstream_error"])
					}
				}
			}
		})
	}
}

// settled checks, once the requests are done, that nothing a failed or
// retried attempt took is still counted: each backend's and client's
// in-flight count, the requests in flight, and open connections to the
// backends whose connections all broke (broken).
func (r *r25RetriesRig) settled(t *testing.T, broken ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var bad []string
		s := r.px.proxy.Current()
		for _, pl := range s.pools {
			for _, up := range pl.targets {
				if n := up.backend.InFlight(); n != 0 {
					bad = append(bad, fmt.Sprintf("backend %s in flight %d", up.backend.Addr, n))
				}
				if n := up.client.InFlight(); n != 0 {
					bad = append(bad, fmt.Sprintf("client %s in flight %d", up.backend.Addr, n))
				}
				for _, b := range broken {
					if up.backend.Addr == b {
						if n := up.client.ConnsCount(); n != 0 {
							bad = append(bad, fmt.Sprintf("backend %s has %d open connections, all broke", b, n))
						}
					}
				}
			}
		}
		if v := r.sum(t, "sluice_requests_in_flight"); v != 0 {
			bad = append(bad, fmt.Sprintf("sluice_requests_in_flight %v", v))
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after the requests: %v", bad)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRetriesReusedConnBrokenMidUploadGetsOneMoreTry: README, Idle
// upstream connections: "when a kept-alive connection breaks before any
// byte of an answer (a reset, a close, a failed write), the request goes
// once more to the same backend on another connection" for an idempotent
// request. A PUT of 16 MiB on a reused connection whose backend reads 1000
// bytes of the body and then resets, or closes (FIN) and reads no more,
// breaks before any answer either way, and gets that try (retries.attempts
// 1, so no other): 200 from the new connection, which gets the body whole.
func TestRetriesReusedConnBrokenMidUploadGetsOneMoreTry(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: more than the sockets' buffers hold
	for _, mode := range []string{"rstmidbody", "finmidbody"} {
		t.Run(mode, func(t *testing.T) {
			b := r25RetriesStart(t, "b", func(conn, turn int) string {
				if turn == 1 {
					return "ok"
				}
				return mode
			})
			r25RetriesSmallRcvBuf(t, b)
			rig := r25RetriesProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
retries: { attempts: 1 }
timeouts: { response: 3s }
limits: { max_body_bytes: 67108864 }
`, b.addr()))
			if ans := r25RetriesDo(t, rig.px.addr, "GET", "/warm", nil, false); ans.code != 200 {
				t.Fatalf("warm-up: %d %v", ans.code, ans.err)
			}
			ans := r25RetriesDo(t, rig.px.addr, "PUT", "/put", big, false)
			if ans.err != nil || ans.code != 200 {
				t.Errorf("PUT of 16 MiB on a reused connection broken before any answer: %d %q %v, want 200 from the one more try", ans.code, ans.body, ans.err)
			}
			time.Sleep(30 * time.Millisecond)
			got := 0
			for _, r := range b.received() {
				if r.path == "/put" {
					got++
					if !bytes.Equal(r.body, big) {
						t.Errorf("the backend got a body of %d bytes, want %d", len(r.body), len(big))
					}
				}
			}
			if ans.code == 200 && got != 1 {
				t.Errorf("the backend read the PUT whole %d times, want 1", got)
			}
			if n := rig.sum(t, "sluice_upstream_errors_total", `kind="idle"`); n != 1 {
				t.Errorf("sluice_upstream_errors_total{kind=\"idle\"} = %v, want 1; all %v", n, gatherCounts(t, rig.m, "sluice_upstream_errors_total"))
			}
			rig.settled(t)
		})
	}
}

// TestRetriesPoolOfOneHonoursAttempts: README, Retries: a pool of
// one retries its one backend, up to retries.attempts tries in all. With
// attempts 4, a backend that reads each request and resets gets a GET,
// PUT or DELETE 4 times (on 4 connections) and a POST or PATCH once; the
// access log says so, and sluice_retries_total and
// sluice_upstream_errors_total{kind="reset"} count the same.
func TestRetriesPoolOfOneHonoursAttempts(t *testing.T) {
	b := r25RetriesStart(t, "b", func(int, int) string { return "rstread" })
	rig := r25RetriesProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { backends: [{ address: %s }] }
retries: { attempts: 4 }
timeouts: { response: 2s }
`, b.addr()))
	wantRetries, wantResets := 0, 0
	for _, method := range []string{"GET", "PUT", "DELETE", "POST", "PATCH"} {
		path := "/" + strings.ToLower(method)
		before := b.conns.Load()
		ans := r25RetriesDo(t, rig.px.addr, method, path, []byte("body-"+method), false)
		time.Sleep(30 * time.Millisecond)
		want := 4
		if !r25RetriesIdempotent(method) {
			want = 1
		}
		if ans.err != nil || ans.code != 502 {
			t.Errorf("%s: %d %v, want 502", method, ans.code, ans.err)
		}
		got := 0
		for _, r := range b.received() {
			if r.path == path {
				got++
				if string(r.body) != "body-"+method {
					t.Errorf("%s: body %q", method, r.body)
				}
			}
		}
		if got != want {
			t.Errorf("%s reached the backend %d times, want %d", method, got, want)
		}
		if n := b.conns.Load() - before; n != int64(want) {
			t.Errorf("%s: %d connections, want %d", method, n, want)
		}
		wantRetries += want - 1
		wantResets += want
	}
	rig.settled(t, b.addr())
	for i, l := range rig.lines(t) {
		want := 4.0
		if i >= 3 {
			want = 1
		}
		if l["attempts"] != want || l["upstream_error"] != "reset" || l["upstream_addr"] != b.addr() {
			t.Errorf("%v %v: attempts %v, upstream_error %v, upstream_addr %v; want %v, reset, %s", l["method"], l["path"], l["attempts"], l["upstream_error"], l["upstream_addr"], want, b.addr())
		}
	}
	if got := rig.sum(t, "sluice_retries_total"); got != float64(wantRetries) {
		t.Errorf("sluice_retries_total = %v, want %d", got, wantRetries)
	}
	if got := rig.sum(t, "sluice_upstream_errors_total", `kind="reset"`); got != float64(wantResets) {
		t.Errorf("sluice_upstream_errors_total{kind=\"reset\"} = %v, want %d", got, wantResets)
	}
}
