//go:build soak

package main

// Restarts, shutdowns, workers and reloads of the real binary under load,
// with every request counted (written by review in session 16; none found
// a bug). Heavy and timing-bound under -race beside other packages, so
// they run apart: make soak (about 40 s).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// soakBackend answers every request with 200; /slow/ after 1.5 s, /big/
// with 16 KiB (answers of 4 KiB or more take netconn's wait for the next
// request inside the write), anything else with a few bytes.
func soakBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 16<<10)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow/"):
			time.Sleep(1500 * time.Millisecond)
			io.WriteString(w, "slow done")
		case strings.HasPrefix(r.URL.Path, "/big/"):
			io.WriteString(w, big)
		default:
			io.WriteString(w, "ok")
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// soakProc is one sluice process (or supervisor) under test.
type soakProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan error
}

func soakStart(t *testing.T, args ...string) *soakProc {
	t.Helper()
	p := &soakProc{stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.exited <- nil
		for _, pid := range workerPIDs(p.stderr.String()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		noRaceReport(t, "sluice", p.stderr.String())
	})
	return p
}

// wait waits up to within for the process to exit and returns its error
// (nil: status 0).
func (p *soakProc) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(within):
		t.Fatalf("process did not exit within %v\n%s", within, p.stderr.String())
		return nil
	}
}

// soakClients keeps n keep-alive connections busy with POSTs and counts,
// precisely, every request written whole that got no answer: lostReused
// on a connection that had already been answered (a keep-alive request,
// which the stop must never lose), lostFresh the first request of a
// connection (which a listener closing with the connection still queued
// may reset; see README on tcp_migrate_req). pause is the time between a
// connection's requests; every third request asks for a 16 KiB answer.
type soakClients struct {
	addr       atomic.Pointer[string]
	pause      time.Duration
	answered   atomic.Int64
	lostReused atomic.Int64
	lostFresh  atomic.Int64
	badStatus  atomic.Int64
	mu         sync.Mutex
	losses     []string
}

func (b *soakClients) run(ctx context.Context, n int) (wait func()) {
	return runClients(ctx, n, b.conn)
}

func (b *soakClients) conn(ctx context.Context, client int) {
	c, err := net.DialTimeout("tcp", *b.addr.Load(), time.Second)
	if err != nil {
		time.Sleep(5 * time.Millisecond)
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ctx.Err() == nil; n++ {
		if n > 0 && b.pause > 0 {
			time.Sleep(b.pause)
		}
		path := "/post"
		if n%3 == 2 {
			path = "/big/post"
		}
		body := fmt.Sprintf("client %d request %d", client, n)
		req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return // not sent whole: the client knows
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			what := fmt.Sprintf("client %d request %d (%s) on %s -> %s: %v", client, n, path, c.LocalAddr(), c.RemoteAddr(), err)
			if n == 0 {
				b.lostFresh.Add(1)
			} else {
				b.lostReused.Add(1)
			}
			b.mu.Lock()
			if len(b.losses) < 8 {
				b.losses = append(b.losses, what)
			}
			b.mu.Unlock()
			return
		}
		if resp.StatusCode != 200 {
			b.badStatus.Add(1)
			b.mu.Lock()
			if len(b.losses) < 8 {
				b.losses = append(b.losses, fmt.Sprintf("client %d request %d: status %d", client, n, resp.StatusCode))
			}
			b.mu.Unlock()
		} else {
			b.answered.Add(1)
		}
		if resp.Close {
			return
		}
	}
}

func (b *soakClients) report() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("answered %d, lost on kept-alive connections %d, lost as a connection's first request %d, non-200 %d\n%s",
		b.answered.Load(), b.lostReused.Load(), b.lostFresh.Load(), b.badStatus.Load(), strings.Join(b.losses, "\n"))
}

// migrateOn reports whether the kernel hands a closing SO_REUSEPORT
// listener's queued connections to another listener of the port.
func migrateOn() bool {
	b, err := os.ReadFile(migrateReqPath)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func soakConfig(listen, admin, backend, extra string) string {
	return fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n%s",
		listen, admin, backend, extra)
}

// TestSoakRestartSIGTERMTimeline: the documented stop, step by step,
// against the real process: /readyz 503 at once, new connections still
// served during shutdown_delay, none accepted after it, the request in
// flight answered 200 with Connection: close, an idle keep-alive
// connection closed with a FIN (not a reset), exit 0 in time.
func TestSoakRestartSIGTERMTimeline(t *testing.T) {
	up := soakBackend(t)
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, soakConfig(listen, admin, up, "shutdown_delay: 1s\nshutdown_timeout: 5s\n"))
	p := soakStart(t, "-config", path)
	waitReady(t, "http://"+admin+"/readyz")

	idle := idleConns(t, listen, 2)
	slow := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: false}}
		resp, err := c.Get("http://" + listen + "/slow/x")
		if err != nil {
			slow <- err
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "slow done" {
			slow <- fmt.Errorf("slow: %d %q", resp.StatusCode, b)
			return
		}
		slow <- nil
	}()
	time.Sleep(1200 * time.Millisecond) // the slow request reaches the backend once the delay passed
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "readyz 503 after SIGTERM", 300*time.Millisecond, func() bool { return answers("http://"+admin+"/readyz", 503) })
	// During shutdown_delay: a new connection is served, and a kept one.
	time.Sleep(200 * time.Millisecond)
	nc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := nc.Get("http://" + listen + "/during-delay")
	if err != nil {
		t.Fatalf("new connection during shutdown_delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("new connection during shutdown_delay: %d", resp.StatusCode)
	}
	if r, err := idle[0].get(); err != nil || r.StatusCode != 200 {
		t.Fatalf("kept connection during shutdown_delay: %v", err)
	}
	// After the delay: the listener is closed.
	time.Sleep(time.Until(start.Add(1300 * time.Millisecond)))
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Errorf("a connection was accepted %v after SIGTERM, shutdown_delay 1s", time.Since(start))
	}
	// The idle connections are closed with a FIN.
	for i, k := range idle {
		_ = k.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := k.br.ReadByte(); err != io.EOF {
			t.Errorf("idle connection %d: read %v, want EOF", i, err)
		}
	}
	if err := <-slow; err != nil {
		t.Errorf("in-flight request: %v", err)
	}
	if err := p.wait(t, 8*time.Second); err != nil {
		t.Errorf("exit: %v, want 0\n%s", err, p.stderr.String())
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stop took %v, want about shutdown_delay (1s) + the slow request's rest", took)
	}
}

// TestSoakRestartSignalDuringStartup: a SIGTERM that comes while
// sluice waits for a DNS pool's first lookup (before it listens) stops it
// with status 0, as any SIGTERM does, and a SIGINT during the drain that
// follows an in-flight request ends it at once.
func TestSoakRestartSignalDuringStartup(t *testing.T) {
	d := startSlowDNS(t, 3*time.Second)
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: info, format: json}\nroutes: [{pool: api}]\npools:\n  api: {discovery: {dns: {name: api.test, port: 9, type: A, interval: 1s, resolver: %s}}}\n", listen, admin, d.addr))
	p := soakStart(t, "-config", path)
	time.Sleep(700 * time.Millisecond) // waiting for the first lookup
	if answers("http://"+admin+"/healthz", 200) {
		t.Log("admin already up before the first lookup")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("SIGTERM during startup: exit %v, want 0\n%s", err, p.stderr.String())
	}
}

// TestSoakRestartSecondSIGINTDuringDrain: SIGTERM with a request in
// flight (shutdown_timeout 20s), then SIGINT: the process ends at once.
func TestSoakRestartSecondSIGINTDuringDrain(t *testing.T) {
	hang := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-time.After(20 * time.Second):
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	defer close(hang)
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, soakConfig(listen, admin, ln.Addr().String(), "shutdown_timeout: 20s\ntimeouts: {response: 30s}\n"))
	p := soakStart(t, "-config", path)
	waitReady(t, "http://"+admin+"/readyz")
	go func() {
		c := &http.Client{Timeout: 25 * time.Second}
		if resp, err := c.Get("http://" + listen + "/hang"); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "readyz 503", 2*time.Second, func() bool { return answers("http://"+admin+"/readyz", 503) })
	time.Sleep(1500 * time.Millisecond) // now waiting for the request in flight
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.exited:
		p.exited <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			t.Errorf("exit after SIGINT during drain: %v, want killed by SIGINT", err)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("still running 3s after a second signal during the drain\n%s", p.stderr.String())
	}
}

// TestSoakRestartUpgradeUnderLoad: the binary upgrade of README and
// examples/upgrade.sh by hand: a second process on the same port
// (listen_reuseport), wait for its /readyz, SIGTERM the first, twice
// back and forth, under 12 keep-alive clients sending POSTs back to back
// and 4 that pause 100 ms between requests. No request on a kept-alive
// connection may be lost; a connection's first request may be reset only
// when tcp_migrate_req is 0 (README), and is reported then.
func TestSoakRestartUpgradeUnderLoad(t *testing.T) {
	for _, delay := range []string{"300ms", "0s"} {
		t.Run("shutdown_delay "+delay, func(t *testing.T) { soakUpgrade(t, delay) })
	}
}

func soakUpgrade(t *testing.T, delay string) {
	up := soakBackend(t)
	listen := freePort(t)
	admins := []string{freePort(t), freePort(t)}
	paths := []string{
		writeConfig(t, soakConfig(listen, admins[0], up, "listen_reuseport: true\nshutdown_delay: "+delay+"\nshutdown_timeout: 5s\nlog: {level: warn, format: json}\n")),
		writeConfig(t, soakConfig(listen, admins[1], up, "listen_reuseport: true\nshutdown_delay: "+delay+"\nshutdown_timeout: 5s\nlog: {level: warn, format: json}\n")),
	}
	old := soakStart(t, "-config", paths[0])
	waitReady(t, "http://"+admins[0]+"/readyz")

	busy, paused := &soakClients{}, &soakClients{pause: 100 * time.Millisecond}
	busy.addr.Store(&listen)
	paused.addr.Store(&listen)
	ctx, stop := context.WithCancel(context.Background())
	w1, w2 := busy.run(ctx, 12), paused.run(ctx, 4)
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return busy.answered.Load() > 300 })
	for round := 1; round <= 2; round++ {
		next := soakStart(t, "-config", paths[round%2])
		if !soakReady("http://"+admins[round%2]+"/readyz", 10*time.Second) {
			t.Fatalf("round %d: new process never ready\n%s", round, next.stderr.String())
		}
		time.Sleep(200 * time.Millisecond) // both serve the port
		if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := old.wait(t, 10*time.Second); err != nil {
			t.Errorf("round %d: old process exit %v, want 0\n%s", round, err, old.stderr.String())
		}
		before := busy.answered.Load()
		waitUntil(t, "load flowing on the new process", 5*time.Second, func() bool { return busy.answered.Load() > before+200 })
		old = next
	}
	stop()
	w1()
	w2()
	for _, c := range []*soakClients{busy, paused} {
		t.Log(c.report())
		if c.lostReused.Load() > 0 || c.badStatus.Load() > 0 {
			t.Errorf("upgrade lost requests: %s", c.report())
		}
		if c.lostFresh.Load() > 0 && migrateOn() {
			t.Errorf("upgrade with tcp_migrate_req=1 reset new connections: %s", c.report())
		}
	}
	_ = old.cmd.Process.Signal(syscall.SIGTERM)
	if err := old.wait(t, 10*time.Second); err != nil {
		t.Errorf("last process exit %v", err)
	}
}

// soakReady polls url until it answers 200, up to within.
func soakReady(url string, within time.Duration) bool {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
	}
	return false
}

// soakGeneration reads the config generation from an admin API.
func soakGeneration(admin string) int {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + admin + "/admin/config")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Generation int `json:"generation"`
	}
	if err := soakJSONDecode(resp.Body, &v); err != nil {
		return -1
	}
	return v.Generation
}

// TestSoakRestartWorkersUnderLoad: `sluice -workers 2` under 12
// keep-alive clients sending POSTs: 5 SIGHUPs with a changed file and one
// that moves the proxy listener reach both workers (generation 7 on each)
// and lose no request; a SIGKILLed worker is restarted and serves; SIGTERM
// stops all with exit 0.
func TestSoakRestartWorkersUnderLoad(t *testing.T) {
	up1, up2 := soakBackend(t), soakBackend(t)
	listen1, listen2 := freePort(t), freePort(t)
	adminPort := twoFreePorts(t)
	render := func(listen string, i int) string {
		backends := "[{address: " + up1 + "}]"
		if i%2 == 1 {
			backends = "[{address: " + up1 + "}, {address: " + up2 + "}]"
		}
		return fmt.Sprintf("listen: %s\nadmin: {listen: 127.0.0.1:%d}\nwatch_config: false\nshutdown_delay: 200ms\nshutdown_timeout: 5s\nlog: {level: info, format: json}\nroutes: [{pool: p}]\npools: {p: {backends: %s}}\n",
			listen, adminPort, backends)
	}
	path := writeConfig(t, render(listen1, 0))
	sup := soakStart(t, "-config", path, "-workers", "2")
	admins := []string{fmt.Sprintf("127.0.0.1:%d", adminPort), fmt.Sprintf("127.0.0.1:%d", adminPort+1)}
	for _, a := range admins {
		if !soakReady("http://"+a+"/readyz", 10*time.Second) {
			t.Fatalf("%s not ready\n%s", a, sup.stderr.String())
		}
	}
	clients := &soakClients{}
	clients.addr.Store(&listen1)
	ctx, stop := context.WithCancel(context.Background())
	wait := clients.run(ctx, 12)
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 300 })
	for i := 1; i <= 5; i++ {
		replaceFile(t, path, render(listen1, i))
		_ = sup.cmd.Process.Signal(syscall.SIGHUP)
		for _, a := range admins {
			waitUntil(t, fmt.Sprintf("reload %d reaches %s", i, a), 5*time.Second, func() bool { return soakGeneration(a) == i+1 })
		}
		before := clients.answered.Load()
		waitUntil(t, "load flowing after the reload", 5*time.Second, func() bool { return clients.answered.Load() > before+100 })
	}
	clients.addr.Store(&listen2)
	replaceFile(t, path, render(listen2, 6))
	_ = sup.cmd.Process.Signal(syscall.SIGHUP)
	for _, a := range admins {
		waitUntil(t, "listen move reaches "+a, 5*time.Second, func() bool { return soakGeneration(a) == 7 })
	}
	before := clients.answered.Load()
	waitUntil(t, "load flowing on the moved listener", 5*time.Second, func() bool { return clients.answered.Load() > before+300 })
	time.Sleep(1500 * time.Millisecond) // the old listeners have drained
	stop()
	wait()
	t.Log(clients.report())
	if clients.lostReused.Load()+clients.lostFresh.Load()+clients.badStatus.Load() > 0 {
		t.Errorf("SIGHUPs to -workers 2 under load lost requests: %s", clients.report())
	}
	if c, err := net.DialTimeout("tcp", listen1, time.Second); err == nil {
		c.Close()
		t.Errorf("the old listen address %s still accepts after the move", listen1)
	}

	pid := workerPID(t, sup.stderr.String(), 0)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker 0 restarted", 8*time.Second, func() bool {
		return workerPID(t, sup.stderr.String(), 0) != pid && answers("http://"+admins[0]+"/readyz", 200)
	})
	if g := soakGeneration(admins[0]); g != 1 {
		t.Logf("restarted worker generation %d", g)
	}
	// The restarted worker serves the moved listener (the file's).
	for range 20 {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + listen2 + "/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the restart: %v", err)
		}
		resp.Body.Close()
	}
	fds := soakFDs(t, workerPID(t, sup.stderr.String(), 1))
	t.Logf("worker 1 has %d fds after 6 reloads", fds)
	_ = sup.cmd.Process.Signal(syscall.SIGTERM)
	if err := sup.wait(t, 15*time.Second); err != nil {
		t.Errorf("supervisor exit %v, want 0\n%s", err, sup.stderr.String())
	}
	for _, pid := range workerPIDs(sup.stderr.String()) {
		if syscall.Kill(pid, 0) == nil {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z") {
				t.Errorf("worker %d still running after the supervisor exited", pid)
			}
		}
	}
}

// soakFDs counts the open descriptors of process pid.
func soakFDs(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}

// TestSoakRestartListenMoveEveryTrigger: the proxy listener moved by
// SIGHUP, by POST /admin/reload and by the file watcher, back and forth,
// on the real process under 12 keep-alive clients sending POSTs (which
// follow the address as soon as the file is written): not one request
// written whole goes unanswered, and every move is taken (generation).
func TestSoakRestartListenMoveEveryTrigger(t *testing.T) {
	up := soakBackend(t)
	addrs := []string{freePort(t), freePort(t)}
	admin := freePort(t)
	render := func(listen string, watch bool) string {
		return soakConfig(listen, admin, up, fmt.Sprintf("watch_config: %v\nshutdown_timeout: 5s\nlog: {level: info, format: json}\n", watch))
	}
	path := writeConfig(t, render(addrs[0], false))
	p := soakStart(t, "-config", path)
	waitReady(t, "http://"+admin+"/readyz")
	clients := &soakClients{}
	clients.addr.Store(&addrs[0])
	ctx, stop := context.WithCancel(context.Background())
	wait := clients.run(ctx, 12)
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return clients.answered.Load() > 300 })
	gen := 1
	for i := 1; i <= 6; i++ {
		to := addrs[i%2]
		clients.addr.Store(&to)
		switch i % 3 {
		case 1: // SIGHUP
			replaceFile(t, path, render(to, false))
			_ = p.cmd.Process.Signal(syscall.SIGHUP)
		case 2: // admin
			replaceFile(t, path, render(to, false))
			code, body := adminReload(t, admin)
			if code != 200 {
				t.Fatalf("move %d by admin reload: %d %s", i, code, body)
			}
		case 0: // the watcher: turned on by a SIGHUP first, then an edit
			replaceFile(t, path, render(addrs[(i+1)%2], true))
			_ = p.cmd.Process.Signal(syscall.SIGHUP)
			gen++
			waitUntil(t, "watch on", 5*time.Second, func() bool { return soakGeneration(admin) == gen })
			replaceFile(t, path, render(to, false))
		}
		gen++
		waitUntil(t, fmt.Sprintf("move %d taken", i), 5*time.Second, func() bool { return soakGeneration(admin) == gen })
		before := clients.answered.Load()
		waitUntil(t, "load flowing on "+to, 5*time.Second, func() bool { return clients.answered.Load() > before+200 })
	}
	time.Sleep(1500 * time.Millisecond)
	stop()
	wait()
	t.Log(clients.report())
	if clients.lostReused.Load()+clients.lostFresh.Load()+clients.badStatus.Load() > 0 {
		t.Errorf("listener moves under load lost requests: %s", clients.report())
	}
	if strings.Contains(p.stderr.String(), "reload rejected") {
		t.Errorf("a move was rejected:\n%s", grepLines(p.stderr.String(), "rejected"))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit %v, want 0\n%s", err, p.stderr.String())
	}
}

// TestSoakRestartNoLeakAfterManyReloads: 60 reloads of the real
// process that move the proxy and admin listeners, turn the access log
// (to a file) and the file watcher on and off, with SIGUSR1s in between
// and kept-alive connections on each listener: its descriptors and
// goroutines come back to where they were.
func TestSoakRestartNoLeakAfterManyReloads(t *testing.T) {
	up := soakBackend(t)
	proxies := []string{freePort(t), freePort(t)}
	admins := []string{freePort(t), freePort(t)}
	logFile := t.TempDir() + "/access.log"
	render := func(i int) string {
		extra := fmt.Sprintf("shutdown_timeout: 3s\nlog: {level: error, format: json}\nwatch_config: %v\n", i%4 == 1)
		if i%3 == 1 {
			extra += "access_log: {enabled: true, path: " + logFile + "}\n"
		}
		return soakConfig(proxies[i%2], admins[(i/2)%2], up, extra)
	}
	path := writeConfig(t, render(0))
	pprof := freePort(t)
	p := soakStart(t, "-config", path, "-pprof", pprof)
	waitReady(t, "http://"+admins[0]+"/readyz")
	sp := &sluiceProc{cmd: p.cmd, stderr: p.stderr, pprof: pprof}
	pid := p.cmd.Process.Pid
	warm := func(i int) {
		for _, k := range idleConns(t, proxies[i%2], 2) {
			k.c.Close()
		}
	}
	warm(0)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	// fasthttp's idle-worker sweeper of a stopped server ends only after
	// its sleep (MaxIdleWorkerDuration, 10 s): not counted (TestMain's
	// goleak ignores it too).
	count := func() int { return sp.goroutines(t) - soakSweepers(pprof) }
	fds0, g0 := soakFDs(t, pid), count()
	for i := 1; i <= 60; i++ {
		replaceFile(t, path, render(i))
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		admin := admins[(i/2)%2]
		waitUntil(t, fmt.Sprintf("reload %d", i), 5*time.Second, func() bool { return soakGeneration(admin) >= i+1 })
		if i%5 == 0 {
			_ = p.cmd.Process.Signal(syscall.SIGUSR1)
		}
		warm(i)
	}
	replaceFile(t, path, render(0))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "back to the start", 5*time.Second, func() bool { return soakGeneration(admins[0]) >= 62 })
	warm(0)
	http.DefaultClient.CloseIdleConnections()
	var fds, g int
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		fds, g = soakFDs(t, pid), count()
		if fds <= fds0 && g <= g0+2 {
			break
		}
	}
	t.Logf("fds %d -> %d, goroutines %d -> %d", fds0, fds, g0, g)
	if fds > fds0 {
		t.Errorf("after 61 reloads: %d fds open, %d before", fds, fds0)
	}
	if g > g0+2 {
		t.Errorf("after 61 reloads: %d goroutines, %d before; the most common:\n%s", g, g0, soakTopGoroutines(pprof))
	}
	if s := p.stderr.String(); strings.Contains(s, "rejected") {
		t.Errorf("reload rejected:\n%s", grepLines(s, "rejected"))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit %v, want 0\n%s", err, p.stderr.String())
	}
}

func soakJSONDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// soakTopGoroutines is the head of a process's goroutine profile (debug=1),
// the most common stacks first.
func soakTopGoroutines(pprof string) string {
	resp, err := http.Get("http://" + pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b[:min(len(b), 3000)])
}

// soakSweepers counts the goroutines of fasthttp's workerPool sweepers in
// a process's goroutine profile.
func soakSweepers(pprof string) int {
	resp, err := http.Get("http://" + pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, k := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "%d @", &k); err == nil {
			continue // a stack's count, for its lines below
		}
		if strings.Contains(line, "fasthttp.(*workerPool).Start.func2") {
			n += k
		}
	}
	return n
}

// TestSoakRestartIdleCloseRace measures, without failing, what README
// admits: keep-alive clients pausing 400 ms between POSTs (longer than
// settleQuiet) during a stop, where a request sent just as its idle
// connection is closed is lost (nginx's graceful quit closes idle
// keep-alive connections the same way). Only a status other than 200 or
// a loss of a client that pauses less than settleQuiet fails it.
func TestSoakRestartIdleCloseRace(t *testing.T) {
	up := soakBackend(t)
	listen, admin := freePort(t), freePort(t)
	path := writeConfig(t, soakConfig(listen, admin, up, "shutdown_timeout: 5s\nlog: {level: warn, format: json}\n"))
	p := soakStart(t, "-config", path)
	waitReady(t, "http://"+admin+"/readyz")
	slowish, quick := &soakClients{pause: 400 * time.Millisecond}, &soakClients{pause: 150 * time.Millisecond}
	slowish.addr.Store(&listen)
	quick.addr.Store(&listen)
	ctx, stop := context.WithCancel(context.Background())
	w1, w2 := slowish.run(ctx, 24), quick.run(ctx, 24)
	waitUntil(t, "load flowing", 5*time.Second, func() bool { return quick.answered.Load() > 100 })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit %v, want 0", err)
	}
	stop()
	w1()
	w2()
	t.Logf("pausing 400 ms: %s", slowish.report())
	t.Logf("pausing 150 ms: %s", quick.report())
	if quick.lostReused.Load()+quick.badStatus.Load()+slowish.badStatus.Load() > 0 {
		t.Errorf("stop lost requests of clients pausing less than settleQuiet: %s", quick.report())
	}
}
