package proxy

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"sluice/metrics"
)

// r22SoakBackend serves /<kind>/<n>/<seed>: len answers
// seeded(n, seed) in one write; drip in 8 KiB pieces 2 ms apart; reset
// sends half the body and resets; up (a POST) answers seeded(n, seed)
// with the request body's CRC in X-Sum. Every answer keeps the
// connection but reset's.
func r22SoakBackend(t *testing.T, served *atomic.Int64) string {
	return bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		served.Add(1)
		parts := strings.Split(string(req.URI().Path()), "/")
		if len(parts) != 4 {
			fmt.Fprintf(c, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
			return true
		}
		n, _ := strconv.Atoi(parts[2])
		seed, _ := strconv.Atoi(parts[3])
		body := seeded(n, seed)
		switch parts[1] {
		case "len":
			_, err := c.Write(append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)), body...))
			return err == nil
		case "drip":
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n); err != nil {
				return false
			}
			for len(body) > 0 {
				k := min(len(body), 8<<10)
				if _, err := c.Write(body[:k]); err != nil {
					return false
				}
				body = body[k:]
				time.Sleep(2 * time.Millisecond)
			}
			return true
		case "bits", "bitsreset":
			// Many small pieces: a pipe runs out of slots and the body
			// goes to a buffer (unsplice); bitsreset then resets.
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n); err != nil {
				return false
			}
			if parts[1] == "bitsreset" {
				body = body[:n*3/4]
			}
			for i := 0; len(body) > 0; i++ {
				k := min(len(body), 1000)
				if _, err := c.Write(body[:k]); err != nil {
					return false
				}
				body = body[k:]
				if i%32 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if parts[1] == "bitsreset" {
				time.Sleep(5 * time.Millisecond)
				_ = c.(*net.TCPConn).SetLinger(0)
				return false
			}
			return true
		case "reset":
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
			_, _ = c.Write(body[:n/2])
			time.Sleep(5 * time.Millisecond)
			_ = c.(*net.TCPConn).SetLinger(0)
			return false
		case "up":
			sum := crc32.ChecksumIEEE(req.Body())
			_, err := c.Write(append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Sum: %d\r\nContent-Length: %d\r\n\r\n", sum, n)), body...))
			return err == nil
		}
		return false
	})
}

// r22Fds counts the process's open descriptors, and those that
// are pipe ends.
func r22Fds() (fds, pipes int) {
	es, _ := os.ReadDir("/proc/self/fd")
	for _, e := range es {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, gone
		}
		fds++
		if strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return
}

// r22Soak is one client's outcome counts.
type r22Soak struct {
	exact, cut, vanished, uploads atomic.Int64
	mu                            sync.Mutex
	bad                           []string
}

func (s *r22Soak) fail(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) < 10 {
		s.bad = append(s.bad, fmt.Sprintf(format, a...))
	}
}

// TestSplicedFaultsAndReloadsLeakNothing: 16 clients for about 3 s
// against one backend, each request one of: a spliced answer (32 KiB to
// 1 MiB) read whole, a dripping backend's answer, an upload of up to
// 1 MiB answered with a spliced body, a body the backend resets halfway
// (502, the documented status for a broken answer), a client that
// reads slowly through a small window, a backend that writes the body in
// 1000-byte pieces (a pipe runs out of slots: the body goes to a buffer)
// and one that resets after three quarters of them, a client that
// vanishes mid-answer (a close or a reset) or mid-upload, and one that
// stops reading (client_write, 1 s, ends its answer); the config is reloaded every 150 ms,
// each reload giving the backend a new upstream client. Every request
// completes byte-exact or gets the documented status, none hangs, and
// afterwards the in-flight gauges are 0, no pipe, upstream connection,
// descriptor or goroutine of sluice's is left.
func TestSplicedFaultsAndReloadsLeakNothing(t *testing.T) {
	var served atomic.Int64
	addr := r22SoakBackend(t, &served)
	m := metrics.New("test")
	yml := func(resp string) string {
		return fmt.Sprintf("timeouts: { response: %s, client_write: 1s }\nretries: { attempts: 1 }\nroutes: [{ pool: p }]\npools:\n  p:\n    backends: [{ address: %s }]\n", resp, addr)
	}
	px := startProxyWith(t, yml("5s"), m)

	// Warm the pools and the runtime, then take the baselines.
	c := testClient(t)
	for i := range 4 {
		if code, _, body := get(t, c, fmt.Sprintf("http://%s/len/%d/%d", px.addr, 64<<10+i*(300<<10), i), nil); code != 200 || len(body) != 64<<10+i*(300<<10) {
			t.Fatalf("warm-up GET: %d, %d bytes", code, len(body))
		}
	}
	c.CloseIdleConnections()
	pipesClosed(t, px)
	time.Sleep(100 * time.Millisecond)
	baseG, _ := ourGoroutines()
	baseFds, basePipes := r22Fds()
	// Each upstream connection open is two descriptors here: sluice's
	// and the backend's.
	baseUp := px.proxy.Current().pools["p"].targets[0].client.ConnsCount()

	sizes := []int{spliceMinBody, 40 << 10, 64 << 10, pipeSize, pipeSize + 1, 300 << 10, 700 << 10, bigPipeSize}
	var res r22Soak
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 22))
			for i := 0; ctx.Err() == nil; i++ {
				n := sizes[rng.IntN(len(sizes))]
				seed := w*10000 + i
				mode := rng.IntN(11)
				sent.Add(1)
				r22SoakOne(t, px.addr, mode, n, seed, rng, &res)
			}
		})
	}
	// Reloads meanwhile: each changes the backend's timeouts, so it gets
	// a new upstream client (the old one closes its connections as they
	// come back).
	reloads := 0
	for tick := time.NewTicker(150 * time.Millisecond); ctx.Err() == nil; reloads++ {
		<-tick.C
		apply(t, px, yml(fmt.Sprintf("%dms", 5000+reloads%2)))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(12 * time.Second):
		_, stacks := ourGoroutines()
		t.Fatalf("clients still waiting 12 s after the load ended (a hang)\n%s", stacks)
	}
	res.mu.Lock()
	for _, b := range res.bad {
		t.Error(b)
	}
	res.mu.Unlock()
	t.Logf("%d requests (%d reloads): %d exact, %d uploads, %d cut with 502, %d clients vanished; backend served %d",
		sent.Load(), reloads, res.exact.Load(), res.uploads.Load(), res.cut.Load(), res.vanished.Load(), served.Load())

	// In-flight counts: the gauge, the routes', the clients' and backends'.
	waitFor(t, "in-flight counts at 0", 5*time.Second, func() bool {
		if reviewScalar(t, m, "sluice_requests_in_flight") != 0 {
			return false
		}
		s := px.proxy.Current()
		for _, pl := range s.pools {
			for _, up := range pl.targets {
				if up.client.InFlight() != 0 || up.backend.InFlight() != 0 {
					return false
				}
			}
		}
		for _, r := range s.routes.any {
			if r.inFlight.Load() != 0 {
				return false
			}
		}
		return true
	})
	pipesClosed(t, px)
	checkChurnGoroutines(t, baseG)
	// Upstream connections: none but the current client's idle ones,
	// which its ConnsCount counts; the descriptors then match.
	var fds, pipes, up int
	deadline := time.Now().Add(8 * time.Second)
	for {
		runtime.GC()
		fds, pipes = r22Fds()
		up = px.proxy.Current().pools["p"].targets[0].client.ConnsCount()
		if (fds-2*up <= baseFds-2*baseUp && pipes <= basePipes) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("descriptors %d (pipe ends %d, upstream connections %d) before, %d (%d, %d) after", baseFds, basePipes, baseUp, fds, pipes, up)
	if fds-2*up > baseFds-2*baseUp || pipes > basePipes {
		t.Errorf("descriptors %d (pipe ends %d) after the soak with %d upstream connections counted open, %d (%d) before with %d",
			fds, pipes, up, baseFds, basePipes, baseUp)
	}
}

// r22SoakOne makes one request of the given mode on a new
// connection and checks its outcome.
func r22SoakOne(t *testing.T, addr string, mode, n, seed int, rng *rand.Rand, res *r22Soak) {
	rcv := 0
	if mode == 4 {
		rcv = 8 << 10 // a slow reader
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if rcv > 0 {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcv) })
		}
		return nil
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		res.fail("dial: %v", err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
	br := bufio.NewReaderSize(conn, 64<<10)
	kind, method, body := "len", "GET", []byte(nil)
	switch mode {
	case 1:
		kind = "drip"
	case 2:
		kind, method = "up", "POST"
		body = seeded(32<<10+rng.IntN(1<<20-32<<10), seed+1)
	case 3:
		kind = "reset"
	case 7:
		kind = "bits"
	case 8:
		kind = "bitsreset"
	case 10:
		kind, method = "up", "POST"
		body = seeded(256<<10, seed+1)
	}
	path := fmt.Sprintf("/%s/%d/%d", kind, n, seed)
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	if mode == 10 { // vanishes in the middle of its upload
		_, _ = conn.Write(append([]byte(head), body[:len(body)/3]...))
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		_ = conn.(*net.TCPConn).SetLinger(0)
		res.vanished.Add(1)
		return
	}
	if _, err := conn.Write(append([]byte(head), body...)); err != nil {
		res.fail("%s %s: write: %v", method, path, err)
		return
	}
	if mode == 9 { // stalls: never reads, client_write ends the answer
		time.Sleep(1500 * time.Millisecond)
		res.vanished.Add(1)
		return
	}
	if mode == 5 || mode == 6 { // vanishes mid-answer
		var b [1024]byte
		_, _ = io.ReadFull(br, b[:])
		if mode == 6 {
			_ = conn.(*net.TCPConn).SetLinger(0)
		}
		res.vanished.Add(1)
		return
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		res.fail("%s %s: no answer: %v", method, path, err)
		return
	}
	var got []byte
	if mode == 4 {
		var buf [4 << 10]byte
		for {
			k, err := resp.Body.Read(buf[:])
			got = append(got, buf[:k]...)
			if err != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	} else {
		got, _ = io.ReadAll(resp.Body)
	}
	resp.Body.Close()
	if mode == 3 || mode == 8 {
		if resp.StatusCode != http.StatusBadGateway {
			res.fail("%s %s (reset halfway): %d, want 502", method, path, resp.StatusCode)
			return
		}
		res.cut.Add(1)
		return
	}
	if resp.StatusCode != 200 {
		res.fail("%s %s: %d %q", method, path, resp.StatusCode, got)
		return
	}
	if string(got) != string(seeded(n, seed)) {
		res.fail("%s %s: body of %d bytes not the %d sent (mode %d)", method, path, len(got), n, mode)
		return
	}
	if mode == 2 {
		if want := strconv.Itoa(int(crc32.ChecksumIEEE(body))); resp.Header.Get("X-Sum") != want {
			res.fail("%s %s: upload of %d bytes reached the backend changed (crc %s, want %s)", method, path, len(body), resp.Header.Get("X-Sum"), want)
			return
		}
		res.uploads.Add(1)
	}
	res.exact.Add(1)
}
