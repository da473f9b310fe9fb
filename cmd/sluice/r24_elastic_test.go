package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// r24ElasticBackend is an HTTP backend on a fixed loopback address
// that can be killed (listener and connections closed at once, as a
// crashed process) and started again on the same address. It counts every
// request it receives; /slow/ requests wait ?d= before answering.
type r24ElasticBackend struct {
	t    *testing.T
	addr string

	hits     atomic.Int64 // every request received
	slowIn   atomic.Int64 // slow requests being served now
	slowSeen atomic.Int64 // slow requests received

	mu     sync.Mutex
	srv    *http.Server
	done   chan struct{}
	killed chan struct{} // closed by kill: slow handlers return
}

func r24ElasticStartBackend(t *testing.T, addr string) *r24ElasticBackend {
	t.Helper()
	b := &r24ElasticBackend{t: t, addr: addr}
	b.start()
	t.Cleanup(b.kill)
	return b
}

func (b *r24ElasticBackend) start() {
	b.t.Helper()
	var ln net.Listener
	var err error
	for range 200 {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("listen %s: %v", b.addr, err)
	}
	killed := make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b.hits.Add(1)
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			b.slowSeen.Add(1)
			b.slowIn.Add(1)
			defer b.slowIn.Add(-1)
			d, _ := time.ParseDuration(r.URL.Query().Get("d"))
			select {
			case <-time.After(d):
			case <-killed:
				return
			}
		}
		_, _ = io.WriteString(w, "from "+b.addr)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	b.mu.Lock()
	b.srv, b.done, b.killed = srv, done, killed
	b.mu.Unlock()
}

// kill closes the listener and every connection at once.
func (b *r24ElasticBackend) kill() {
	b.mu.Lock()
	srv, done, killed := b.srv, b.done, b.killed
	b.srv = nil
	b.mu.Unlock()
	if srv == nil {
		return
	}
	close(killed)
	_ = srv.Close()
	<-done
}

// r24ElasticOutcome is one request's result.
type r24ElasticOutcome struct {
	method, url string
	code        int
	err         error
	at          time.Time
}

// r24ElasticLoad runs clients that send GETs and POSTs, over
// keep-alive connections and not, and counts every outcome.
type r24ElasticLoad struct {
	mu       sync.Mutex
	ok       int
	failures []r24ElasticOutcome
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func r24ElasticStartLoad(urls []string, clients int) *r24ElasticLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &r24ElasticLoad{cancel: cancel}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableKeepAlives: i%2 == 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			for n := 0; ctx.Err() == nil; n++ {
				url := urls[(i+n)%len(urls)]
				method := http.MethodGet
				var body io.Reader
				if (i/2)%2 == 1 {
					method, body = http.MethodPost, strings.NewReader(fmt.Sprintf("post c%d n%d", i, n))
				}
				req, _ := http.NewRequest(method, url, body)
				resp, err := c.Do(req)
				code := 0
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				if ctx.Err() != nil && err != nil {
					return // cut by the end of the load, not by sluice
				}
				l.mu.Lock()
				if err == nil && code == 200 {
					l.ok++
				} else {
					l.failures = append(l.failures, r24ElasticOutcome{method, url, code, err, time.Now()})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *r24ElasticLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// check reports every failure so far, with the step it came in.
func (l *r24ElasticLoad) check(t *testing.T, step string) {
	t.Helper()
	l.mu.Lock()
	ok, failures := l.ok, append([]r24ElasticOutcome(nil), l.failures...)
	l.failures = nil
	l.mu.Unlock()
	for i, f := range failures {
		if i < 10 {
			t.Errorf("step %q: %s %s at %s: status %d, error %v; want 200", step, f.method, f.url, f.at.Format("05.000"), f.code, f.err)
		}
	}
	if len(failures) > 0 {
		t.Errorf("step %q: %d requests failed (%d ok so far)", step, len(failures), ok)
	} else {
		t.Logf("step %q: %d ok so far, 0 failed", step, ok)
	}
}

// r24ElasticSlowGroup sends slow requests (GETs and POSTs
// alternately) and collects their results.
type r24ElasticSlowGroup struct {
	url string
	n   int
	out chan r24ElasticOutcome
	wg  sync.WaitGroup
}

func r24ElasticSlow(url string) *r24ElasticSlowGroup {
	return &r24ElasticSlowGroup{url: url, out: make(chan r24ElasticOutcome, 64)}
}

// send sends one more slow request.
func (g *r24ElasticSlowGroup) send() {
	method := http.MethodGet
	if g.n%2 == 1 {
		method = http.MethodPost
	}
	g.n++
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("slow post")
		}
		req, _ := http.NewRequest(method, g.url, body)
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Timeout: 15 * time.Second, Transport: tr}
		resp, err := c.Do(req)
		o := r24ElasticOutcome{method: method, url: g.url, err: err, at: time.Now()}
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.code, o.err = resp.StatusCode, rerr
			o.url = string(b) // the answering backend
		}
		g.out <- o
	}()
}

// until sends slow requests, one at a time once the last has arrived,
// until on says target has want in flight (at most 40).
func (g *r24ElasticSlowGroup) until(t *testing.T, target *r24ElasticBackend, want int64, arrived func() int64) {
	t.Helper()
	for target.slowIn.Load() < want {
		if g.n >= 40 {
			t.Fatalf("40 slow requests sent, %d in flight on %s, want %d", target.slowIn.Load(), target.addr, want)
		}
		g.send()
		waitUntil(t, "the slow request arrives", 5*time.Second, func() bool { return arrived() == int64(g.n) })
	}
}

// results waits for every slow request and returns their outcomes.
func (g *r24ElasticSlowGroup) results() []r24ElasticOutcome {
	g.wg.Wait()
	close(g.out)
	var all []r24ElasticOutcome
	for o := range g.out {
		all = append(all, o)
	}
	return all
}

// r24ElasticPools is GET /admin/pools: pool -> address -> status.
func r24ElasticPools(t *testing.T, admin string) map[string]map[string]map[string]any {
	t.Helper()
	resp, err := r24ElasticOnce.Get("http://" + admin + "/admin/pools")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Pools []struct {
			Name     string           `json:"name"`
			Backends []map[string]any `json:"backends"`
		} `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]map[string]any{}
	for _, p := range v.Pools {
		out[p.Name] = map[string]map[string]any{}
		for _, b := range p.Backends {
			out[p.Name][b["address"].(string)] = b
		}
	}
	return out
}

// r24ElasticListed reports whether /admin/pools lists addr in pool,
// and its source.
func r24ElasticListed(t *testing.T, admin, pool, addr string) (bool, string) {
	t.Helper()
	b, ok := r24ElasticPools(t, admin)[pool][addr]
	if !ok {
		return false, ""
	}
	src, _ := b["source"].(string)
	return true, src
}

// r24ElasticFDs counts the open descriptors of process pid.
func r24ElasticFDs(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(es)
}

// r24ElasticOnce sends requests on connections of their own.
var r24ElasticOnce = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// r24ElasticGoroutines counts sluice's goroutines but fasthttp's idle
// workers (kept for up to 10 s after their last connection), and returns
// the profile.
func r24ElasticGoroutines(t *testing.T, p *sluiceProc) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.pprof + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	n := 0
	for _, block := range strings.Split(string(body), "\n\n")[1:] {
		var count int
		if _, err := fmt.Sscanf(block, "%d @", &count); err != nil {
			continue
		}
		lines := strings.Split(block, "\n")
		if len(lines) > 1 && strings.Contains(lines[1], "(*workerPool).workerFunc") {
			continue // idle worker
		}
		n += count
	}
	return n, string(body)
}

// r24ElasticSettle waits up to 5 s for f() to fall to at most want,
// and returns the last value.
func r24ElasticSettle(want int, f func() int) int {
	n := f()
	for end := time.Now().Add(5 * time.Second); n > want && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		n = f()
	}
	return n
}

// TestElasticDNSScaleOutInUnderLoad: a DNS pool under continuous
// load (keep-alive and not, GET and POST) scales out (a new address in
// the answer), scales in with slow requests in flight on the leaving
// instance (drain_timeout shorter than them), the instance is killed once
// /admin/pools no longer lists it, and it is started again on the same
// port and put back in the answer. README promises tested:
//   - Draining: a backend gone from DNS "gets no new request from the next
//     snapshot on; its in-flight requests (slow ones included) complete
//     normally"; "Requests still running at the deadline are not cut".
//   - New and vanished backends: new addresses join and take traffic.
//   - A backend freed from its drain is sent nothing more, so killing it
//     then fails no request.
//
// And sluice's goroutines and descriptors go back to where they were.
func TestElasticDNSScaleOutInUnderLoad(t *testing.T) {
	_, portStr, _ := net.SplitHostPort(freePort(t))
	port, _ := strconv.Atoi(portStr)
	at := func(i int) string { return fmt.Sprintf("127.0.0.%d:%d", i, port) }
	a := r24ElasticStartBackend(t, at(2))
	b := r24ElasticStartBackend(t, at(3))
	dnsSrv := startTestDNS(t, "api.test.")
	dnsSrv.set("127.0.0.2", "127.0.0.3")

	listen, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %s
admin: {listen: %s}
watch_config: false
drain_timeout: 500ms
timeouts: {response: 10s, upstream_idle: 1s}
log: {level: warn, format: json}
routes: [{pool: api}]
pools:
  api:
    algorithm: round_robin
    discovery: {dns: {name: api.test., port: %d, type: A, interval: 100ms, resolver: %s}}
`, listen, admin, port, dnsSrv.addr)
	p := startSluice(t, writeConfig(t, cfg))
	waitReady(t, "http://"+admin+"/readyz")
	base := "http://" + listen
	waitUntil(t, "both DNS backends serve", 5*time.Second, func() bool {
		if resp, err := r24ElasticOnce.Get(base + "/x"); err == nil {
			resp.Body.Close()
		}
		return a.hits.Load() > 0 && b.hits.Load() > 0
	})
	time.Sleep(300 * time.Millisecond)
	fds0 := r24ElasticFDs(t, p.cmd.Process.Pid)
	gor0, _ := r24ElasticGoroutines(t, p)

	load := r24ElasticStartLoad([]string{base + "/x", base + "/y"}, 8)
	defer load.stop()
	time.Sleep(200 * time.Millisecond)
	load.check(t, "warm-up")

	// Scale out.
	c := r24ElasticStartBackend(t, at(4))
	dnsSrv.set("127.0.0.2", "127.0.0.3", "127.0.0.4")
	waitUntil(t, "the new DNS backend takes traffic", 5*time.Second, func() bool { return c.hits.Load() > 0 })
	load.check(t, "scale out to 3")

	// Slow requests on every backend, then b leaves the answer.
	seen0 := a.slowSeen.Load() + b.slowSeen.Load() + c.slowSeen.Load()
	slow := r24ElasticSlow(base + "/slow/x?d=1500ms")
	slow.until(t, b, 3, func() int64 { return a.slowSeen.Load() + b.slowSeen.Load() + c.slowSeen.Load() - seen0 })
	slowOnB := b.slowSeen.Load()
	dnsSrv.set("127.0.0.2", "127.0.0.4")
	waitUntil(t, "b leaving", 5*time.Second, func() bool {
		_, src := r24ElasticListed(t, admin, "api", b.addr)
		return src == "leaving"
	})
	time.Sleep(100 * time.Millisecond) // requests picked before the swap land
	hitsB := b.hits.Load()
	for _, o := range slow.results() {
		if o.err != nil || o.code != 200 {
			t.Errorf("slow %s in flight while its backend left: status %d, %v; want 200 (README: in-flight requests complete, not cut at drain_timeout)", o.method, o.code, o.err)
		}
	}
	if got := b.slowSeen.Load(); got != slowOnB {
		t.Errorf("b received %d slow requests, want the %d sent before it left", got, slowOnB)
	}
	load.check(t, "scale in with slow requests in flight")
	waitUntil(t, "b freed", 5*time.Second, func() bool {
		listed, _ := r24ElasticListed(t, admin, "api", b.addr)
		return !listed
	})
	if got := b.hits.Load(); got != hitsB {
		t.Errorf("b received %d requests after it left the DNS answer, want 0", got-hitsB)
	}
	b.kill()
	time.Sleep(300 * time.Millisecond)
	load.check(t, "freed backend killed")

	// b comes back on the same port.
	b.start()
	hitsB = b.hits.Load()
	dnsSrv.set("127.0.0.2", "127.0.0.3", "127.0.0.4")
	waitUntil(t, "b back in rotation", 5*time.Second, func() bool { return b.hits.Load() > hitsB })
	time.Sleep(300 * time.Millisecond)
	load.check(t, "b restarted and back in DNS")
	load.stop()

	fds := r24ElasticSettle(fds0+4, func() int { return r24ElasticFDs(t, p.cmd.Process.Pid) })
	if fds > fds0+4 {
		t.Errorf("sluice has %d descriptors open after the load, %d before: leak", fds, fds0)
	}
	gor := r24ElasticSettle(gor0+2, func() int { n, _ := r24ElasticGoroutines(t, p); return n })
	if gor > gor0+2 {
		_, stacks := r24ElasticGoroutines(t, p)
		t.Errorf("sluice has %d goroutines after the load, %d before: leak\n%s", gor, gor0, stacks)
	}
	t.Logf("descriptors %d -> %d, goroutines %d -> %d", fds0, fds, gor0, gor)
}

// TestElasticAdminAndReloadUnderLoad: a static pool under the same
// load has a backend's weight set to 0 and back through the admin API, a
// backend drained through the admin API with slow requests in flight and
// undrained, a backend removed by POST /admin/reload with slow requests
// in flight (drain_timeout shorter than them), killed once freed, and
// added back on the same port by SIGHUP. README promises tested: weight
// 0 "keeps the backend in the pool without sending it new requests";
// drain (admin or reload) sends no new request and lets in-flight ones
// complete; a freed backend is sent nothing; no request fails.
func TestElasticAdminAndReloadUnderLoad(t *testing.T) {
	var bs []*r24ElasticBackend
	for range 3 {
		bs = append(bs, r24ElasticStartBackend(t, freePort(t)))
	}
	listen, admin := freePort(t), freePort(t)
	render := func(addrs ...string) string {
		var s strings.Builder
		fmt.Fprintf(&s, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\ndrain_timeout: 500ms\n", listen, admin)
		s.WriteString("timeouts: {response: 10s, upstream_idle: 1s}\nlog: {level: warn, format: json}\nroutes: [{pool: web}]\n")
		s.WriteString("pools:\n  web:\n    algorithm: least_conn\n    backends:\n")
		for _, a := range addrs {
			fmt.Fprintf(&s, "      - {address: %s}\n", a)
		}
		return s.String()
	}
	path := writeConfig(t, render(bs[0].addr, bs[1].addr, bs[2].addr))
	p := startSluice(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	base := "http://" + listen
	adminDo := func(method, url, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+url, strings.NewReader(body))
		resp, err := r24ElasticOnce.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s = %d %s", method, url, resp.StatusCode, b)
		}
	}
	backendOp := func(b *r24ElasticBackend, op, method, body string) {
		t.Helper()
		adminDo(method, "/admin/pools/web/backends/"+b.addr+"/"+op, body)
	}

	load := r24ElasticStartLoad([]string{base + "/x", base + "/y"}, 8)
	defer load.stop()
	waitUntil(t, "every backend serves", 5*time.Second, func() bool {
		return bs[0].hits.Load() > 0 && bs[1].hits.Load() > 0 && bs[2].hits.Load() > 0
	})
	load.check(t, "warm-up")

	// Weight 0, then back.
	backendOp(bs[2], "weight", http.MethodPut, `{"weight": 0}`)
	time.Sleep(100 * time.Millisecond)
	h := bs[2].hits.Load()
	time.Sleep(500 * time.Millisecond)
	if got := bs[2].hits.Load(); got != h {
		t.Errorf("backend at admin weight 0 received %d new requests, want 0", got-h)
	}
	backendOp(bs[2], "weight", http.MethodPut, "3")
	waitUntil(t, "traffic back after weight 3", 5*time.Second, func() bool { return bs[2].hits.Load() > h })
	load.check(t, "admin weight 0 and back")

	// Admin drain with slow requests in flight.
	seen := func() int64 { return bs[0].slowSeen.Load() + bs[1].slowSeen.Load() + bs[2].slowSeen.Load() }
	seen0 := seen()
	slow := r24ElasticSlow(base + "/slow/x?d=1500ms")
	slow.until(t, bs[0], 2, func() int64 { return seen() - seen0 })
	backendOp(bs[0], "drain", http.MethodPost, "")
	time.Sleep(100 * time.Millisecond)
	h = bs[0].hits.Load()
	for _, o := range slow.results() {
		if o.err != nil || o.code != 200 {
			t.Errorf("slow %s in flight during an admin drain: status %d, %v; want 200", o.method, o.code, o.err)
		}
	}
	if got := bs[0].hits.Load(); got != h {
		t.Errorf("admin-drained backend received %d new requests, want 0", got-h)
	}
	backendOp(bs[0], "undrain", http.MethodPost, "")
	waitUntil(t, "traffic back after undrain", 5*time.Second, func() bool { return bs[0].hits.Load() > h })
	load.check(t, "admin drain with slow requests in flight, undrain")

	// POST /admin/reload removes bs[1] with slow requests on it.
	seen0 = seen()
	slow = r24ElasticSlow(base + "/slow/x?d=1500ms")
	slow.until(t, bs[1], 2, func() int64 { return seen() - seen0 })
	slowOn1 := bs[1].slowSeen.Load()
	if err := os.WriteFile(path, []byte(render(bs[0].addr, bs[2].addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	adminDo(http.MethodPost, "/admin/reload", "")
	time.Sleep(100 * time.Millisecond)
	h = bs[1].hits.Load()
	for _, o := range slow.results() {
		if o.err != nil || o.code != 200 {
			t.Errorf("slow %s in flight while a reload removed its backend: status %d, %v; want 200", o.method, o.code, o.err)
		}
	}
	if got := bs[1].slowSeen.Load(); got != slowOn1 {
		t.Errorf("removed backend received %d slow requests, want the %d sent before the reload", got, slowOn1)
	}
	waitUntil(t, "bs[1] freed", 5*time.Second, func() bool {
		listed, _ := r24ElasticListed(t, admin, "web", bs[1].addr)
		return !listed
	})
	if got := bs[1].hits.Load(); got != h {
		t.Errorf("removed backend received %d requests after the reload, want 0", got-h)
	}
	bs[1].kill()
	time.Sleep(300 * time.Millisecond)
	load.check(t, "reload removes a backend with slow requests in flight; killed once freed")

	// SIGHUP puts it back, restarted on the same port.
	bs[1].start()
	h = bs[1].hits.Load()
	if err := os.WriteFile(path, []byte(render(bs[0].addr, bs[1].addr, bs[2].addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bs[1] back after SIGHUP", 5*time.Second, func() bool { return bs[1].hits.Load() > h })
	time.Sleep(200 * time.Millisecond)
	load.check(t, "SIGHUP adds the restarted backend")
	load.stop()
	if out := p.stderr.String(); bytes.Contains([]byte(out), []byte(`"level":"error"`)) {
		t.Errorf("sluice logged errors:\n%s", out)
	}
}

// r24ElasticSRV answers SRV queries for name from a list of records
// the test changes; each record's target is inst<port>.srv.test., whose A
// record is 127.0.0.1.
type r24ElasticSRV struct {
	addr string
	mu   sync.Mutex
	recs map[int]uint16 // port -> weight
}

func r24ElasticStartSRV(t *testing.T, name string) *r24ElasticSRV {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &r24ElasticSRV{addr: pc.LocalAddr().String(), recs: map[int]uint16{}}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		qn := ""
		if len(q.Question) == 1 {
			qn = q.Question[0].Name
		}
		switch {
		case qn == name && q.Question[0].Qtype == dns.TypeSRV:
			d.mu.Lock()
			for port, weight := range d.recs {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
					Priority: 0, Weight: weight, Port: uint16(port), Target: fmt.Sprintf("inst%d.srv.test.", port)})
			}
			d.mu.Unlock()
		case strings.HasPrefix(qn, "inst") && strings.HasSuffix(qn, ".srv.test.") && q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
		case strings.HasPrefix(qn, "inst") || qn == name:
			// Exists, no records of that type.
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return d
}

// set replaces the records: port -> weight.
func (d *r24ElasticSRV) set(recs map[int]uint16) {
	d.mu.Lock()
	d.recs = recs
	d.mu.Unlock()
}

// r24ElasticShare counts the requests each backend gets over d and
// returns the first's share of their sum.
func r24ElasticShare(d time.Duration, first, second *r24ElasticBackend) (float64, int64) {
	a0, b0 := first.hits.Load(), second.hits.Load()
	time.Sleep(d)
	a, b := first.hits.Load()-a0, second.hits.Load()-b0
	if a+b == 0 {
		return 0, 0
	}
	return float64(a) / float64(a+b), a + b
}

// TestElasticSRVWeightsAndRedeploy: an SRV pool under load has a
// record's weight changed (README, New and vanished backends: "A weight
// change (SRV) applies at once to the backend, which keeps its
// identity"), then an instance is redeployed on a new port: the new one
// takes traffic, the old one drains, is sent nothing once freed, and is
// killed then; no request fails.
func TestElasticSRVWeightsAndRedeploy(t *testing.T) {
	x := r24ElasticStartBackend(t, freePort(t))
	y := r24ElasticStartBackend(t, freePort(t))
	port := func(b *r24ElasticBackend) int { return portOf(t, b.addr) }
	d := r24ElasticStartSRV(t, "_http._tcp.api.srv.test.")
	d.set(map[int]uint16{port(x): 1, port(y): 1})
	listen, admin := freePort(t), freePort(t)
	p := startSluice(t, writeConfig(t, fmt.Sprintf(`listen: %s
admin: {listen: %s}
watch_config: false
drain_timeout: 1s
timeouts: {response: 10s, upstream_idle: 1s}
log: {level: warn, format: json}
routes: [{pool: api}]
pools:
  api:
    algorithm: round_robin
    discovery: {dns: {name: _http._tcp.api.srv.test., type: SRV, interval: 100ms, resolver: %s}}
`, listen, admin, d.addr)))
	waitReady(t, "http://"+admin+"/readyz")
	base := "http://" + listen
	load := r24ElasticStartLoad([]string{base + "/x", base + "/y"}, 8)
	defer load.stop()
	waitUntil(t, "both instances serve", 5*time.Second, func() bool { return x.hits.Load() > 0 && y.hits.Load() > 0 })
	load.check(t, "warm-up")

	share, n := r24ElasticShare(500*time.Millisecond, x, y)
	if share < 0.35 || share > 0.65 {
		t.Errorf("share of x at SRV weights 1:1 = %.2f of %d, want about 0.5", share, n)
	}
	d.set(map[int]uint16{port(x): 3, port(y): 1})
	waitUntil(t, "x at weight 3", 5*time.Second, func() bool {
		b := r24ElasticPools(t, admin)["api"]["127.0.0.1:"+strconv.Itoa(port(x))]
		w, _ := b["weight"].(float64)
		return w == 3
	})
	share, n = r24ElasticShare(500*time.Millisecond, x, y)
	if share < 0.65 || share > 0.85 {
		t.Errorf("share of x at SRV weights 3:1 = %.2f of %d, want about 0.75", share, n)
	}
	load.check(t, "SRV weight change")

	// y is redeployed on a new port.
	y2 := r24ElasticStartBackend(t, freePort(t))
	d.set(map[int]uint16{port(x): 3, port(y2): 1})
	waitUntil(t, "the new instance takes traffic", 5*time.Second, func() bool { return y2.hits.Load() > 0 })
	yAddr := "127.0.0.1:" + strconv.Itoa(port(y))
	waitUntil(t, "the old instance freed", 5*time.Second, func() bool {
		_, ok := r24ElasticPools(t, admin)["api"][yAddr]
		return !ok
	})
	h := y.hits.Load()
	time.Sleep(200 * time.Millisecond)
	if got := y.hits.Load(); got != h {
		t.Errorf("freed instance received %d requests, want 0", got-h)
	}
	y.kill()
	time.Sleep(300 * time.Millisecond)
	load.check(t, "redeploy on a new port; old instance killed once freed")
	load.stop()
	_ = p
}

// r24ElasticGeneration is /admin/config's generation.
func r24ElasticGeneration(t *testing.T, admin string) float64 {
	t.Helper()
	resp, err := r24ElasticOnce.Get("http://" + admin + "/admin/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	g, _ := v["generation"].(float64)
	return g
}

// TestElasticWatchedEditsUnderLoad: with watch_config on, the
// file is replaced by rename (as editors and ConfigMap swaps do) over and
// over under load, each version adding, removing and reweighting
// backends; then also edited in place. README promises tested (Hot
// reload, Draining): every such change is applied, no request fails, and
// a removed backend gets no request once /admin/pools no longer lists it.
func TestElasticWatchedEditsUnderLoad(t *testing.T) {
	var bs []*r24ElasticBackend
	for range 3 {
		bs = append(bs, r24ElasticStartBackend(t, freePort(t)))
	}
	listen, admin := freePort(t), freePort(t)
	render := func(weights [3]int) string {
		var s strings.Builder
		fmt.Fprintf(&s, "listen: %s\nadmin: {listen: %s}\nwatch_config: true\ndrain_timeout: 500ms\n", listen, admin)
		s.WriteString("timeouts: {response: 10s, upstream_idle: 1s}\nlog: {level: warn, format: json}\nroutes: [{pool: web}]\n")
		s.WriteString("pools:\n  web:\n    algorithm: p2c\n    backends:\n")
		for i, w := range weights {
			if w >= 0 {
				fmt.Fprintf(&s, "      - {address: %s, weight: %d}\n", bs[i].addr, w)
			}
		}
		return s.String()
	}
	path := writeConfig(t, render([3]int{1, 1, 1}))
	p := startSluice(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	base := "http://" + listen
	load := r24ElasticStartLoad([]string{base + "/x", base + "/y"}, 8)
	defer load.stop()
	waitUntil(t, "every backend serves", 5*time.Second, func() bool {
		return bs[0].hits.Load() > 0 && bs[1].hits.Load() > 0 && bs[2].hits.Load() > 0
	})
	load.check(t, "warm-up")

	// -1: not in the file.
	versions := [][3]int{{1, 1, -1}, {1, 3, 1}, {-1, 1, 2}, {2, 1, 0}, {1, -1, 1}, {1, 1, 1}}
	for i, v := range versions {
		gen := r24ElasticGeneration(t, admin)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(render(v)), 0o600); err != nil {
			t.Fatal(err)
		}
		if i == len(versions)-1 {
			// The last one edited in place.
			if err := os.WriteFile(path, []byte(render(v)), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Remove(tmp)
		} else if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, fmt.Sprintf("version %d applied", i), 5*time.Second, func() bool { return r24ElasticGeneration(t, admin) > gen })
		for j, w := range v {
			if w > 0 {
				continue
			}
			// Out (-1: removed, 0: weight 0): wait for the change to be
			// in force, then nothing more may reach it.
			if w < 0 {
				waitUntil(t, fmt.Sprintf("backend %d freed", j), 5*time.Second, func() bool {
					listed, _ := r24ElasticListed(t, admin, "web", bs[j].addr)
					return !listed
				})
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			h := bs[j].hits.Load()
			time.Sleep(200 * time.Millisecond)
			if got := bs[j].hits.Load(); got != h {
				t.Errorf("version %d: backend %d (weight %d in the file) received %d requests after leaving rotation, want 0", i, j, w, got-h)
			}
		}
		load.check(t, fmt.Sprintf("version %d %v", i, v))
	}
	load.stop()
	if out := p.stderr.String(); strings.Contains(out, `"level":"error"`) {
		t.Errorf("sluice logged errors:\n%s", out)
	}
}
