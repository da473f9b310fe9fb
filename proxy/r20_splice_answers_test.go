package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
	"sluice/netconn"
)

// TestSplicedRetryAfterCutBody: a GET whose first attempt's body
// breaks off while being spliced (the backend closes after 40000 of 65536
// bytes) is retried on the other backend (README, Retries: a connection
// that broke after the request was sent is retried for idempotent
// methods), whose spliced body reaches the client whole; the broken
// attempt's pipe is closed.
func TestSplicedRetryAfterCutBody(t *testing.T) {
	const n = 64 << 10
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			var cuts atomic.Int64
			cut := serveRaw(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				cuts.Add(1)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Backend: cut\r\nContent-Length: %d\r\n\r\n", n)
				_, _ = c.Write(seeded(40000, 9))
				time.Sleep(50 * time.Millisecond)
				if reset {
					_ = c.(*net.TCPConn).SetLinger(0)
				}
			})
			good := patternBackend(t)
			px := startProxy(t, fmt.Sprintf("retries: { attempts: 2 }\nroutes:\n  - pool: p\npools:\n  p:\n    algorithm: round_robin\n    backends:\n      - { address: %s }\n      - { address: %s }\n",
				cut.Addr(), good.addr()))
			c := testClient(t)
			for i := range 4 {
				code, be, body := get(t, c, fmt.Sprintf("http://%s/%d/%d", px.addr, n, i), nil)
				if code != http.StatusOK || be != "pattern" || !bytes.Equal([]byte(body), seeded(n, i)) {
					t.Fatalf("GET %d: %d from %q, %d bytes, intact %v", i, code, be, len(body), bytes.Equal([]byte(body), seeded(n, i)))
				}
			}
			if cuts.Load() == 0 {
				t.Fatal("no request reached the backend that cuts its bodies")
			}
			c.CloseIdleConnections()
			pipesClosed(t, px)
		})
	}
}

// TestSplicedStalledReader: client_write bounds a spliced
// answer's write as a buffered one's (README: how long a write may wait
// with no byte taken): a client that stops reading has its connection
// closed about client_write later, and the pipe holding the rest of the
// body is closed. (A slow but steady reader is not tested here: with
// socket buffers this small, loopback's 64 KiB MSS makes TCP itself stall
// for its persist timer, hundreds of ms, buffered answers too.)
func TestSplicedStalledReader(t *testing.T) {
	b := patternBackend(t)
	y := strings.Replace(poolYAML("round_robin", []*testBackend{b}, nil), "routes:", "timeouts: { client_write: 400ms }\nroutes:", 1)
	px := startProxyOn(t, y, nil, func(ln net.Listener) net.Listener { return smallSendBuffers{ln} })
	const n = pipeSize

	t.Run("stalled", func(t *testing.T) {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(conn, "GET /%d/2 HTTP/1.1\r\nHost: x\r\n\r\n", n)
		time.Sleep(1500 * time.Millisecond) // past client_write
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("after a stall: %d bytes, %v (want the connection closed)", len(got), err)
		}
		if len(got) >= n {
			t.Fatalf("stalled reader got the whole answer (%d bytes): client_write did not apply", len(got))
		}
		pipesClosed(t, px)
	})
}

// TestSplicedAnswerThenDrain: a keep-alive connection waiting for
// its next request inside a spliced answer's last splice, when the
// listener drains (Listener.Drain, as a graceful stop does), gets its
// next spliced answer whole with "Connection: close", and is then closed.
func TestSplicedAnswerThenDrain(t *testing.T) {
	b := patternBackend(t)
	var nl *netconn.Listener
	px := startProxyOn(t, poolYAML("round_robin", []*testBackend{b}, nil), nil, func(ln net.Listener) net.Listener {
		nl = ln.(*netconn.Listener)
		return ln
	})
	const n = 64 << 10
	conn, r := dialProxy(t, px.addr)
	fmt.Fprintf(conn, "GET /%d/1 HTTP/1.1\r\nHost: x\r\n\r\n", n)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, seeded(n, 1)) {
		t.Fatalf("first answer: %d bytes, %v", len(body), err)
	}
	time.Sleep(50 * time.Millisecond) // in its wait
	if err := nl.Drain(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /%d/3 HTTP/1.1\r\nHost: x\r\n\r\n", n)
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, seeded(n, 3)) || !resp.Close {
		t.Fatalf("answer on a draining connection: %d bytes, %v, Connection: close %v", len(body), err, resp.Close)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("draining connection still open after its closing answer")
	}
	pipesClosed(t, px)
}

// TestSplicedAnswersBackendClosesOrOld: a backend that closes
// after each answer ("Connection: close", or HTTP/1.0 without keep-alive)
// has its spliced bodies passed on whole, and the client's connection
// kept.
func TestSplicedAnswersBackendClosesOrOld(t *testing.T) {
	const n = 100 << 10
	for _, status := range []string{"HTTP/1.1 200 OK\r\nConnection: close", "HTTP/1.0 200 OK"} {
		t.Run(strings.Fields(status)[0], func(t *testing.T) {
			ln := serveRaw(t, func(c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				var seed int
				fmt.Sscanf(req.URL.Path, "/%d", &seed)
				fmt.Fprintf(c, "%s\r\nContent-Length: %d\r\n\r\n", status, n)
				body := seeded(n, seed)
				_, _ = c.Write(body[:1000])
				time.Sleep(2 * time.Millisecond)
				_, _ = c.Write(body[1000:])
			})
			px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
			conn, r := dialProxy(t, px.addr)
			for i := range 5 {
				fmt.Fprintf(conn, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, seeded(n, i)) || resp.Close {
					t.Fatalf("answer %d: %d, %d bytes, %v, close %v", i, resp.StatusCode, len(body), err, resp.Close)
				}
			}
		})
	}
}

// TestSplicedBodyThenUnaskedBytes: a backend that sends more
// after a spliced body (here a whole second response, in the same write)
// must not have those bytes taken for the answer to the next request on
// that connection (README: bytes after the response came with it unasked:
// the connection is out of step). The buffered path drops such a
// connection at once; the spliced one reads exactly the body and leaves
// the rest in the socket, for the idle check before the next request.
func TestSplicedBodyThenUnaskedBytes(t *testing.T) {
	const n = 64 << 10
	ln := serveRaw(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			if req.URL.Path == "/small" {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
				continue
			}
			var out bytes.Buffer
			fmt.Fprintf(&out, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			out.Write(seeded(n, 5))
			out.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
			_, _ = c.Write(out.Bytes())
		}
	})
	px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	c := testClient(t)
	for i := range 5 {
		code, _, body := get(t, c, "http://"+px.addr+"/big", nil)
		if code != 200 || !bytes.Equal([]byte(body), seeded(n, 5)) {
			t.Fatalf("big %d: %d, %d bytes", i, code, len(body))
		}
		code, _, body = get(t, c, "http://"+px.addr+"/small", nil)
		if code != 200 || body != "good" {
			t.Fatalf("small %d after a spliced body with unasked bytes behind it: %d %q", i, code, body)
		}
	}
}

// TestSplicedAnswersKeepEarlyHints: 103 Early Hints still reach
// the client on a connection after spliced answers (netconn's turn count,
// which hintable compares with the request count, must see each spliced
// answer end), and a 103 never splits or overtakes a spliced answer
// pipelined before its request (after which, README, no more 103s go on
// that connection).
func TestSplicedAnswersKeepEarlyHints(t *testing.T) {
	for _, n := range []int{spliceMinBody, 64 << 10, pipeSize} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, br := proxyClient(t, hintsBackend(t, n), "")
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			for i := range 3 {
				if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				if codes, bodies := readAnswers(t, br, 1); len(codes) != 1 || len(bodies[0]) != n {
					t.Fatalf("round %d: big answer %v", i, codes)
				}
				if _, err := io.WriteString(c, "GET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				if codes, bodies := readAnswers(t, br, 1); len(codes) != 2 || codes[0] != http.StatusEarlyHints || bodies[1] != "ok" {
					t.Fatalf("round %d: hint answers %v, want a 103 then 200 after a spliced answer", i, codes)
				}
			}
			if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			codes, bodies := readAnswers(t, br, 2)
			if codes[0] != 200 || len(bodies[0]) != n || bodies[len(bodies)-1] != "ok" {
				t.Fatalf("pipelined: answers %v, first body %d bytes", codes, len(bodies[0]))
			}
		})
	}
}

// TestSplicedAnswersCounted: sluice_response_bytes_total and the
// access log's bytes_out count a spliced body as a buffered one (its
// length; none for HEAD), and a spliced answer refused after its read
// (an invalid field name: 502, badResponse) counts the error text sent,
// closes its pipe, and leaves the client's connection usable.
func TestSplicedAnswersCounted(t *testing.T) {
	const n = 64 << 10
	body := string(seeded(n, 3))
	good := startRawBackend(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Pad: 1\r\nContent-Length: %d\r\n\r\n%s", n, body))
	bad := startRawBackend(t, fmt.Sprintf("HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: %d\r\n\r\n%s", n, body))
	m := metrics.New("test")
	y := fmt.Sprintf("retries: { attempts: 1 }\nroutes:\n  - { match: { path_prefix: /bad/ }, pool: bad }\n  - pool: good\npools:\n  good: { backends: [{ address: %s }] }\n  bad: { backends: [{ address: %s }] }\n",
		good.ln.Addr(), bad.ln.Addr())
	px := startProxyWith(t, y, m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	conn, r := dialProxy(t, px.addr)
	var errText string
	for _, q := range []struct{ method, path string }{{"GET", "/"}, {"HEAD", "/"}, {"GET", "/bad/"}, {"GET", "/"}} {
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", q.method, q.path)
		req, _ := http.NewRequest(q.method, q.path, nil)
		resp, err := http.ReadResponse(r, req)
		if err != nil {
			t.Fatalf("%s %s: %v", q.method, q.path, err)
		}
		got, err := io.ReadAll(resp.Body)
		want := map[string]int{"GET /": 200, "HEAD /": 200, "GET /bad/": 502}[q.method+" "+q.path]
		if err != nil || resp.StatusCode != want || q.method == "GET" && want == 200 && string(got) != body {
			t.Fatalf("%s %s: %d (want %d), %d bytes, %v", q.method, q.path, resp.StatusCode, want, len(got), err)
		}
		if want == 502 {
			errText = string(got)
		}
	}
	px.proxy.SetAccessLog(nil)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	wantOut := []float64{n, 0, float64(len(errText)), n}
	lines := accessLogLines(t, path)
	if len(lines) != len(wantOut) {
		t.Fatalf("%d access log lines", len(lines))
	}
	total := 0.0
	for i, l := range lines {
		total += wantOut[i]
		if l["bytes_out"] != wantOut[i] {
			t.Errorf("access log line %d: bytes_out %v, want %v", i, l["bytes_out"], wantOut[i])
		}
	}
	if got := reviewSum(gatherCounts(t, m, "sluice_response_bytes_total")); got != total {
		t.Errorf("sluice_response_bytes_total = %v, want %v", got, total)
	}
	conn.Close()
	pipesClosed(t, px)
}

// TestSplicedAnswersToUploads: spliced answers to uploads (after
// a 100 Continue; with a body over 128 KiB, whose answer does not wait for
// the next request; and a POST pipelined behind a GET) arrive whole, and
// the connection goes on serving.
func TestSplicedAnswersToUploads(t *testing.T) {
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	conn, r := dialProxy(t, px.addr)
	_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
	read := func(what string, n, seed int) {
		t.Helper()
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, seeded(n, seed)) {
			t.Fatalf("%s: %d, %d bytes, %v", what, resp.StatusCode, len(got), err)
		}
	}
	const n = 64 << 10
	fmt.Fprintf(conn, "POST /%d/1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", n)
	if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue: %v %v", resp, err)
	}
	io.WriteString(conn, "body")
	read("after 100 Continue", n, 1)
	big := bytes.Repeat([]byte("u"), 200<<10)
	fmt.Fprintf(conn, "POST /%d/2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, len(big), big)
	read("after a 200 KiB upload", n, 2)
	fmt.Fprintf(conn, "GET /%d/3 HTTP/1.1\r\nHost: x\r\n\r\nPOST /%d/4 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", n, pipeSize)
	time.Sleep(20 * time.Millisecond)
	io.WriteString(conn, "hello")
	read("GET before a pipelined POST", n, 3)
	read("pipelined POST", pipeSize, 4)
	fmt.Fprintf(conn, "GET /%d/5 HTTP/1.1\r\nHost: x\r\n\r\n", spliceMinBody)
	read("last", spliceMinBody, 5)
}

// TestSplicedBodyInSmallPieces: a backend that writes a long body
// in many small pieces runs the pipe out of slots; the body then goes to
// a lent buffer, whole, through the proxy end to end, several at once,
// and no pipe is left open.
func TestSplicedBodyInSmallPieces(t *testing.T) {
	const n = 100 << 10
	ln := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		var seed int
		fmt.Sscanf(req.URL.Path, "/%d", &seed)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n", n)
		body := seeded(n, seed)
		for i := 0; i < n; i += 700 {
			_, _ = c.Write(body[i:min(i+700, n)])
			if i%(14<<10) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	px := startProxy(t, fmt.Sprintf("routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", ln.Addr()))
	c := testClient(t)
	errs := make(chan error, 8)
	for w := range 4 {
		go func() {
			for i := range 3 {
				seed := w*10 + i
				resp, err := c.Get(fmt.Sprintf("http://%s/%d", px.addr, seed))
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, seeded(n, seed)) {
					errs <- fmt.Errorf("seed %d: %d bytes, %v", seed, len(got), err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.CloseIdleConnections()
	pipesClosed(t, px)
}
