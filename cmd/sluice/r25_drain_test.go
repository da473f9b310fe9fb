package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// r25DrainBackend is a loopback HTTP backend for the drain tests:
// /upload answers the length and sha256 of the body it read, /big sends
// r25DrainBigSize deterministic bytes, /slow answers after a pause,
// anything else answers its own address. It counts requests per path
// prefix.
type r25DrainBackend struct {
	addr  string
	hits  atomic.Int64
	slowN atomic.Int64
	srv   *http.Server
}

const r25DrainBigSize = 8 << 20

func r25DrainBig() []byte {
	b := make([]byte, r25DrainBigSize)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

func r25DrainStartBackend(t *testing.T, slow time.Duration) *r25DrainBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := r25DrainBig()
	b := &r25DrainBackend{addr: ln.Addr().String()}
	b.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		switch {
		case r.URL.Path == "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				w.WriteHeader(400)
				return
			}
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		case r.URL.Path == "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		case strings.HasPrefix(r.URL.Path, "/slow"):
			b.slowN.Add(1)
			time.Sleep(slow)
			io.WriteString(w, "slow "+b.addr)
		default:
			io.WriteString(w, b.addr)
		}
	})}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// r25DrainStart runs the sluice binary on a config with one pool of
// the given backends and extra top-level settings.
func r25DrainStart(t *testing.T, extra string, backends ...string) (listen, admin, path string, cmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	listen, admin = freePort(t), freePort(t)
	path = writeConfig(t, r25DrainConfig(listen, admin, extra, backends...))
	cmd = exec.Command(binary, "-config", path)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	waitReady(t, "http://"+admin+"/readyz")
	return listen, admin, path, cmd, stderr
}

func r25DrainConfig(listen, admin, extra string, backends ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: warn, format: json}\n%s", listen, admin, extra)
	b.WriteString("routes: [{pool: p}]\npools:\n  p:\n    algorithm: round_robin\n    backends:\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "      - {address: %s}\n", a)
	}
	return b.String()
}

// TestDrainStopFinishesSlowUpload: a client in the middle of a
// slow upload when SIGTERM comes (the head and part of the body sent) is
// an in-flight request: it gets its answer, computed on the whole body,
// and sluice then exits 0.
func TestDrainStopFinishesSlowUpload(t *testing.T) {
	up := r25DrainStartBackend(t, 0)
	listen, _, _, cmd, stderr := r25DrainStart(t, "shutdown_timeout: 10s\n", up.addr)

	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:]))

	c, err := net.DialTimeout("tcp", listen, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", len(body))
	const piece = 64 << 10
	if _, err := c.Write(body[:piece]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The rest trickles in over about 1.5 s, across the stop's settle.
	for off := piece; off < len(body); off += piece {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write(body[off : off+piece]); err != nil {
			t.Fatalf("upload cut at %d of %d bytes after SIGTERM: %v\n%s", off, len(body), err, stderr.String())
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("upload in flight at SIGTERM got no answer: %v\n%s", err, stderr.String())
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != want {
		t.Errorf("upload in flight at SIGTERM = %d %q, want 200 %q", resp.StatusCode, got, want)
	}
	waitExit(t, cmd, stderr, 15*time.Second, "sluice")
}

// TestDrainStopFinishesLargeDownload: an 8 MiB answer being read
// by its client when SIGTERM comes arrives whole and intact.
func TestDrainStopFinishesLargeDownload(t *testing.T) {
	up := r25DrainStartBackend(t, 0)
	listen, _, _, cmd, stderr := r25DrainStart(t, "shutdown_timeout: 10s\n", up.addr)
	big := r25DrainBig()

	c, err := net.DialTimeout("tcp", listen, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(big))
	buf := make([]byte, 64<<10)
	signalled := false
	for {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if !signalled && len(got) >= 256<<10 {
			signalled = true
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("download cut at %d of %d bytes after SIGTERM: %v\n%s", len(got), len(big), err, stderr.String())
		}
		if signalled {
			time.Sleep(5 * time.Millisecond) // a slow reader
		}
	}
	if !signalled {
		t.Fatal("body shorter than the point of the signal")
	}
	if resp.StatusCode != 200 || !bytes.Equal(got, big) {
		t.Errorf("download in flight at SIGTERM = %d, %d bytes (intact %v), want 200 and %d intact bytes",
			resp.StatusCode, len(got), bytes.Equal(got, big), len(big))
	}
	waitExit(t, cmd, stderr, 15*time.Second, "sluice")
}

// TestDrainStopIdleClosedNewRefusedInFlightDone: on SIGTERM
// (shutdown_delay 0) idle keep-alive client connections are closed while
// a slow request still runs, a connection attempt once readiness is off
// is refused (the listener stopped accepting), and the slow request gets
// its answer with "Connection: close"; exit 0.
func TestDrainStopIdleClosedNewRefusedInFlightDone(t *testing.T) {
	up := r25DrainStartBackend(t, 3*time.Second)
	listen, admin, _, cmd, stderr := r25DrainStart(t, "shutdown_timeout: 10s\n", up.addr)
	idle := idleConns(t, listen, 3)

	type answer struct {
		code  int
		body  string
		close bool
		err   error
	}
	slow := make(chan answer, 1)
	go func() {
		c, err := net.DialTimeout("tcp", listen, 2*time.Second)
		if err != nil {
			slow <- answer{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			slow <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- answer{code: resp.StatusCode, body: string(b), close: resp.Close}
	}()
	waitUntil(t, "slow request at the backend", 5*time.Second, func() bool { return up.slowN.Load() == 1 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "readiness off", 5*time.Second, func() bool { return answers("http://"+admin+"/readyz", 503) })

	// Idle connections are closed while the slow request runs.
	for i, k := range idle {
		_ = k.c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
		var b [1]byte
		n, err := k.c.Read(b[:])
		if n != 0 || err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
			t.Errorf("idle connection %d during the stop: read %d bytes, %v; want closed (EOF or reset) before the slow request ends", i, n, err)
		}
	}
	select {
	case a := <-slow:
		t.Fatalf("slow request ended before the idle connections were checked: %+v", a)
	default:
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, rerr := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if rerr == nil {
			resp.Body.Close()
		}
		t.Errorf("connection attempt during the stop was accepted (answer %v, %v), want refused", resp != nil, rerr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connection attempt during the stop: %v, want connection refused", err)
	}
	a := <-slow
	if a.err != nil || a.code != 200 || !strings.HasPrefix(a.body, "slow ") || !a.close {
		t.Errorf("slow request in flight at SIGTERM = %+v, want 200 \"slow ...\" with Connection: close", a)
	}
	waitExit(t, cmd, stderr, 15*time.Second, "sluice")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDrainReloadUnderLoadAnswersAll: 8 keep-alive clients send
// GETs and POSTs without pause while six reloads remove a backend, add
// another back, change upstream timeouts (every backend gets a new client)
// and the algorithm; every answer is 200, and each backend removed with
// slow requests in flight finishes them.
func TestDrainReloadUnderLoadAnswersAll(t *testing.T) {
	a, b, c := r25DrainStartBackend(t, 700*time.Millisecond), r25DrainStartBackend(t, 700*time.Millisecond), r25DrainStartBackend(t, 700*time.Millisecond)
	extra := "shutdown_timeout: 10s\ndrain_timeout: 5s\n"
	listen, admin, path, cmd, stderr := r25DrainStart(t, extra, a.addr, b.addr)

	var ok, bad atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	note := func(s string) {
		bad.Add(1)
		mu.Lock()
		if len(errs) < 10 {
			errs = append(errs, s)
		}
		mu.Unlock()
	}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var resp *http.Response
				var err error
				switch {
				case i == 0:
					resp, err = hc.Get("http://" + listen + "/slow")
				case n%2 == 0:
					resp, err = hc.Post("http://"+listen+"/upload", "text/plain", strings.NewReader(strings.Repeat("x", 3000)))
				default:
					resp, err = hc.Get("http://" + listen + "/")
				}
				if err != nil {
					note(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					note(fmt.Sprintf("%d %v", resp.StatusCode, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	steps := []struct {
		extra    string
		backends []string
	}{
		{extra, []string{b.addr, c.addr}},                                         // a leaves, c joins
		{extra + "timeouts: {response: 20s}\n", []string{b.addr, c.addr}},         // new clients
		{extra + "timeouts: {response: 20s}\n", []string{a.addr, b.addr, c.addr}}, // a back
		{extra, []string{c.addr}},                                                 // a and b leave, new clients
		{extra, []string{a.addr, b.addr}},                                         // c leaves
		{extra + "timeouts: {upstream_idle: 1s}\n", []string{a.addr, b.addr}},     // new clients
	}
	time.Sleep(400 * time.Millisecond)
	for i, s := range steps {
		cfg := r25DrainConfig(listen, admin, s.extra, s.backends...)
		replaceFile(t, path, cfg)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, fmt.Sprintf("reload %d", i+1), 5*time.Second, func() bool {
			return strings.Count(stderr.String(), "config reload rejected") == 0 && r25DrainGeneration(admin) == i+2
		})
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d answers 200, %d failed", ok.Load(), bad.Load())
	if bad.Load() != 0 {
		t.Errorf("%d of %d requests failed across reloads: %v", bad.Load(), bad.Load()+ok.Load(), errs)
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests answered", ok.Load())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, stderr, 15*time.Second, "sluice")
}

// r25DrainGeneration is the config generation /admin/config shows,
// -1 when it cannot be read.
func r25DrainGeneration(admin string) int {
	resp, err := http.Get("http://" + admin + "/admin/config")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	i := bytes.Index(b, []byte(`"generation":`))
	if i < 0 {
		return -1
	}
	rest := bytes.TrimLeft(b[i+len(`"generation":`):], " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(string(rest[:j]))
	if err != nil {
		return -1
	}
	return n
}

// TestDrainWorkersReloadAndStop: under `-workers 2`, with 6
// keep-alive clients busy, a SIGHUP to the supervisor that removes the
// backend serving slow requests lets those in flight finish, and a SIGTERM
// then lets every request in flight on either worker finish; every answer
// is 200 and the supervisor exits 0.
func TestDrainWorkersReloadAndStop(t *testing.T) {
	a := r25DrainStartBackend(t, 1500*time.Millisecond)
	b := r25DrainStartBackend(t, 1500*time.Millisecond)
	listen, adminPort := freePort(t), twoFreePorts(t)
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	extra := "shutdown_timeout: 10s\ndrain_timeout: 10s\n"
	path := writeConfig(t, r25DrainConfig(listen, admin, extra, a.addr))
	cmd, stderr := startSupervisor(t, path, 2)
	for i := range 2 {
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort+i))
	}

	var ok, bad atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				url := "http://" + listen + "/"
				if i < 3 {
					url = "http://" + listen + "/slow"
				}
				resp, err := hc.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					bad.Add(1)
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitUntil(t, "slow requests at a", 5*time.Second, func() bool { return a.slowN.Load() >= 3 })
	replaceFile(t, path, r25DrainConfig(listen, admin, extra, b.addr))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "slow requests at b", 8*time.Second, func() bool { return b.slowN.Load() >= 3 })
	slowA := a.slowN.Load()
	// Stop now, with slow requests in flight on b; the clients stop
	// sending once the listener has stopped (connection refused is then
	// expected, and not counted).
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("clients still busy 20 s after SIGTERM")
	}
	waitExit(t, cmd, stderr, 15*time.Second, "supervisor")
	mu.Lock()
	defer mu.Unlock()
	var lost []string
	for _, e := range errs {
		if !strings.Contains(e, "connection refused") {
			lost = append(lost, e)
		}
	}
	t.Logf("%d answers 200, %d failed; slow at a %d, at b %d", ok.Load(), bad.Load(), slowA, b.slowN.Load())
	if len(lost) != 0 {
		t.Errorf("%d requests failed across the reload and the stop: %v", len(lost), lost)
	}
	if a.slowN.Load() != slowA {
		t.Errorf("removed backend got %d new slow requests after the reload", a.slowN.Load()-slowA)
	}
}
