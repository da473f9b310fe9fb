package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// r24MetBackend is a real HTTP backend whose answers the path
// chooses: /size/N (N bytes with Content-Length), /chunk/N (N bytes in 4
// chunks), /204, /304, /slow (held until the client goes), /echo (reads
// the body, answers "ok"), /err500, anything else 404. It counts its open
// connections.
type r24MetBackend struct {
	addr   string
	open   atomic.Int64
	probes atomic.Int64 // GET /h
	fail   atomic.Bool  // answer 500 to all but /h
}

func r24MetStartBackend(t *testing.T) *r24MetBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &r24MetBackend{addr: ln.Addr().String()}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			p := r.URL.Path
			if p == "/h" {
				b.probes.Add(1)
			}
			if b.fail.Load() && p != "/h" {
				p = "/err500"
			}
			switch {
			case strings.HasPrefix(p, "/size/"):
				n, _ := strconv.Atoi(strings.TrimPrefix(p, "/size/"))
				w.Header().Set("Content-Length", strconv.Itoa(n))
				w.Write(bytes.Repeat([]byte("s"), n))
			case strings.HasPrefix(p, "/chunk/"):
				n, _ := strconv.Atoi(strings.TrimPrefix(p, "/chunk/"))
				f := w.(http.Flusher)
				for i := range 4 {
					k := n / 4
					if i == 3 {
						k = n - 3*(n/4)
					}
					w.Write(bytes.Repeat([]byte("c"), k))
					f.Flush()
				}
			case p == "/204":
				w.WriteHeader(204)
			case p == "/304":
				w.Header().Set("ETag", `"e"`)
				w.WriteHeader(304)
			case p == "/slow":
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			case p == "/echo":
				fmt.Fprintf(w, "ok:%d", len(body))
			case p == "/err500":
				w.WriteHeader(500)
				io.WriteString(w, "boom")
			case p == "/h":
				io.WriteString(w, "up")
			default:
				w.WriteHeader(404)
				io.WriteString(w, "nope")
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				b.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				b.open.Add(-1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// r24MetResetBackend reads one request per connection, then resets
// the connection.
func r24MetResetBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					io.Copy(io.Discard, req.Body)
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}(c)
		}
	}()
	return ln.Addr().String()
}

// r24MetDeadAddr is a loopback address that refuses connections.
func r24MetDeadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// r24MetScrape GETs /metrics, checks that it parses under the text
// format's strict rules, that each family has one HELP and one TYPE line
// before its samples, and that no series appears twice; it returns the
// families.
func r24MetScrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	text := getBody(t, "http://"+admin+"/metrics")
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	help, typ := map[string]int{}, map[string]int{}
	seen := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "# HELP "):
			help[strings.Fields(l)[2]]++
		case strings.HasPrefix(l, "# TYPE "):
			typ[strings.Fields(l)[2]]++
		case strings.HasPrefix(l, "#"):
		default:
			i := strings.LastIndexByte(l, ' ')
			if seen[l[:i]] {
				t.Errorf("series %s appears twice", l[:i])
			}
			seen[l[:i]] = true
		}
	}
	for name := range mfs {
		if help[name] != 1 || typ[name] != 1 {
			t.Errorf("family %s: %d HELP and %d TYPE lines, want 1 each", name, help[name], typ[name])
		}
		if strings.HasPrefix(name, "sluice_") && !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("family %s: invalid name", name)
		}
	}
	return mfs
}

// r24MetSeries lists family name's series as "k=v,k=v" (labels
// sorted) -> value (a histogram's value is its sample count).
func r24MetSeries(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	mf := mfs[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		k := strings.Join(ls, ",")
		switch {
		case m.Counter != nil:
			out[k] = m.Counter.GetValue()
		case m.Gauge != nil:
			out[k] = m.Gauge.GetValue()
		case m.Histogram != nil:
			out[k] = float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			out[k] = m.Untyped.GetValue()
		}
	}
	return out
}

// r24MetCompare reports every difference between got and want
// (missing series, extra series, other values).
func r24MetCompare(t *testing.T, name string, got, want map[string]float64) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("%s{%s} missing, want %v", name, k, w)
		case !wok:
			t.Errorf("%s{%s} = %v, a series that should not exist", name, k, g)
		case g != w:
			t.Errorf("%s{%s} = %v, want %v", name, k, g, w)
		}
	}
}

// r24MetRaw sends raw on a new connection and reads the one answer
// (method: the request's), returning its status and body length.
func r24MetRaw(t *testing.T, addr, raw, method string) (int, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%.40q: %v", raw, err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, int(n)
}

// TestMetExactMix sends a known mix of traffic through a real
// sluice (its own wiring, admin listener and /metrics) and compares every
// request-path metric with what happened: requests by route, pool,
// backend and class (2xx of every size, spliced, chunked, HEAD, 204,
// 304, a backend's 404 and 500, 504, 502 connect and reset, 503 no
// backend, 404 no route, the handler's 400/405/505 refusals; fasthttp's
// 431 and 413 are not counted), retries, upstream errors by kind, the
// duration histograms' counts, request and response body bytes, and
// in-flight, client and upstream connection gauges back at rest. The
// exposition must parse, with no duplicate series and no series beyond
// the config's.
func TestMetExactMix(t *testing.T) {
	good := r24MetStartBackend(t)
	rst := r24MetResetBackend(t)
	dead := r24MetDeadAddr(t)
	listen, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %s
admin: {listen: %s}
watch_config: false
log: {level: error}
timeouts: {response: 400ms}
retries: {attempts: 2}
limits: {max_header_bytes: 2048, max_body_bytes: 2097152}
routes:
  - {match: {host: a.test}, pool: web}
  - {match: {path_prefix: /dead/}, pool: dead}
  - {match: {path_prefix: /empty/}, pool: empty}
  - {match: {path_prefix: /rst/}, pool: rst}
pools:
  web: {backends: [{address: %s}]}
  dead: {backends: [{address: %s}]}
  empty: {backends: [{address: %s, weight: 0}]}
  rst: {backends: [{address: %s}]}
`, listen, admin, good.addr, dead, good.addr, rst)
	runInProcess(t, writeConfig(t, cfg))
	waitReady(t, "http://"+admin+"/readyz")

	type rowKey struct{ route, pool, backend, class string }
	rows := map[rowKey]float64{}
	var reqBytes, respBytes float64
	upObserved := map[string]float64{} // pool/backend -> answers passed on
	count := func(route, pool, backend string, status int) {
		rows[rowKey{route, pool, backend, fmt.Sprintf("%dxx", status/100)}]++
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do := func(method, host, path string, body io.Reader, wantStatus int) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+listen+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s%s: status %d, want %d", method, host, path, resp.StatusCode, wantStatus)
		}
		respBytes += float64(n)
		return resp.StatusCode
	}
	web := func(method, path string, body []byte, chunked bool, want int, passed bool) {
		t.Helper()
		var r io.Reader
		if body != nil {
			reqBytes += float64(len(body))
			r = bytes.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // no length known: chunked
			}
		}
		st := do(method, "a.test", path, r, want)
		count("a.test/", "web", good.addr, st)
		if passed {
			upObserved["backend="+good.addr+",pool=web"]++
		}
	}
	for _, n := range []int{0, 100, 16 << 10, 32 << 10, 64<<10 + 1, 300000, 1 << 20} {
		web("GET", fmt.Sprintf("/size/%d", n), nil, false, 200, true)
	}
	web("GET", "/chunk/5000", nil, false, 200, true)
	web("GET", "/chunk/200000", nil, false, 200, true)
	web("HEAD", "/size/1048576", nil, false, 200, true)
	web("HEAD", "/size/100", nil, false, 200, true)
	web("GET", "/204", nil, false, 204, true)
	web("GET", "/304", nil, false, 304, true)
	web("POST", "/echo", bytes.Repeat([]byte("p"), 10000), false, 200, true)
	web("POST", "/echo", bytes.Repeat([]byte("q"), 70000), true, 200, true)
	web("PUT", "/echo", bytes.Repeat([]byte("u"), 1<<20), false, 200, true)
	web("GET", "/missing", nil, false, 404, true)
	web("GET", "/err500", nil, false, 500, true)
	web("GET", "/slow", nil, false, 504, false) // timeout: not retried

	st := do("GET", "x.test", "/dead/a", nil, 502) // connect refused, twice
	count("/dead/", "dead", dead, st)
	st = do("GET", "x.test", "/empty/a", nil, 503)
	count("/empty/", "empty", "", st)
	reqBytes += 5
	st = do("POST", "x.test", "/rst/a", strings.NewReader("hello"), 502)
	count("/rst/", "rst", rst, st)
	st = do("GET", "x.test", "/", nil, 404) // no route
	count("", "", "", st)
	tr.CloseIdleConnections()

	// Pipelined requests, HTTP/1.0, Expect: 100-continue, an
	// absolute-form target and a body sent to no route, on raw
	// connections.
	{
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /size/10 HTTP/1.1\r\nHost: a.test\r\n\r\n"+
			"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc"+
			"GET http://a.test/size/20 HTTP/1.1\r\nHost: other\r\n\r\n"+
			"POST /nothing HTTP/1.1\r\nHost: b.test\r\nContent-Length: 4\r\n\r\nwxyz"+
			"GET /size/30 HTTP/1.0\r\nHost: a.test\r\n\r\n")
		br := bufio.NewReader(c)
		for i, want := range []int{200, 200, 200, 404, 200} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("pipelined answer %d: %v", i, err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("pipelined answer %d: %d, want %d", i, resp.StatusCode, want)
			}
			respBytes += float64(n)
			if want == 404 {
				count("", "", "", want)
			} else {
				count("a.test/", "web", good.addr, want)
				upObserved["backend="+good.addr+",pool=web"]++
			}
		}
		reqBytes += 3 + 4
		c.Close()
		c, err = net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n")
		br = bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "100") {
			t.Fatalf("Expect: 100-continue: %q %v", line, err)
		}
		br.ReadString('\n')
		io.WriteString(c, "123456")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		respBytes += float64(n)
		reqBytes += 6
		count("a.test/", "web", good.addr, resp.StatusCode)
		upObserved["backend="+good.addr+",pool=web"]++
		c.Close()
	}

	// The handler's refusals: counted with route, pool and backend "".
	refusals := []struct {
		raw, method string
		want        int
	}{
		{"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "POST", 400},
		{"CONNECT a.test:80 HTTP/1.1\r\nHost: a.test:80\r\n\r\n", "CONNECT", 405},
		{"GET //x HTTP/1.1\r\nHost: a.test\r\n\r\n", "GET", 400},
		{"GET / HTTP/1.1\r\nHost: a..test\r\n\r\n", "GET", 400},
	}
	for _, r := range refusals {
		st, n := r24MetRaw(t, listen, r.raw, r.method)
		if st != r.want {
			t.Fatalf("%.30q: status %d, want %d", r.raw, st, r.want)
		}
		count("", "", "", st)
		respBytes += float64(n)
	}
	// fasthttp's own refusals: not counted anywhere.
	if st, _ := r24MetRaw(t, listen, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: "+strings.Repeat("b", 4000)+"\r\n\r\n", "GET"); st != 431 {
		t.Fatalf("big head: status %d, want 431", st)
	}
	if st, _ := r24MetRaw(t, listen, "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3000000\r\n\r\n", "POST"); st != 413 {
		t.Fatalf("big body: status %d, want 413", st)
	}

	// At rest: every client connection closed.
	var mfs map[string]*dto.MetricFamily
	waitUntil(t, "the gauges at rest", 5*time.Second, func() bool {
		mfs = r24MetScrape(t, admin)
		g := func(name string) float64 { return r24MetSeries(mfs, name)[""] }
		up := r24MetSeries(mfs, "sluice_upstream_connections")["backend="+good.addr+",pool=web"]
		return g("sluice_requests_in_flight") == 0 && g("sluice_downstream_connections") == 0 &&
			up == float64(good.open.Load())
	})
	mfs = r24MetScrape(t, admin)

	// sluice_requests_total: every row of the config, five classes each,
	// and nothing else.
	wantRows := map[string]float64{}
	for _, r := range []rowKey{
		{"", "", "", ""}, {"a.test/", "web", "", ""}, {"a.test/", "web", good.addr, ""},
		{"/dead/", "dead", "", ""}, {"/dead/", "dead", dead, ""}, {"/empty/", "empty", "", ""},
		{"/rst/", "rst", "", ""}, {"/rst/", "rst", rst, ""},
	} {
		for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
			r.class = c
			wantRows[fmt.Sprintf("backend=%s,code=%s,pool=%s,route=%s", r.backend, c, r.pool, r.route)] = rows[r]
			delete(rows, r)
		}
	}
	if len(rows) != 0 {
		t.Fatalf("test bug: rows outside the config: %v", rows)
	}
	r24MetCompare(t, "sluice_requests_total", r24MetSeries(mfs, "sluice_requests_total"), wantRows)

	// Each route's latency histogram counts its requests.
	byRoute := map[string]float64{}
	for k, v := range wantRows {
		route := k[strings.LastIndex(k, "route=")+len("route="):]
		if route != "" {
			byRoute["route="+route] += v
		}
	}
	r24MetCompare(t, "sluice_request_duration_seconds_count", r24MetSeries(mfs, "sluice_request_duration_seconds"), byRoute)

	backends := []string{"backend=" + good.addr + ",pool=web", "backend=" + dead + ",pool=dead",
		"backend=" + good.addr + ",pool=empty", "backend=" + rst + ",pool=rst"}
	wantUp := map[string]float64{}
	for _, b := range backends {
		wantUp[b] = upObserved[b]
	}
	r24MetCompare(t, "sluice_upstream_duration_seconds_count", r24MetSeries(mfs, "sluice_upstream_duration_seconds"), wantUp)

	wantErr := map[string]float64{}
	errKey := func(b, kind string) string {
		// labels sort as backend, kind, pool
		i := strings.Index(b, ",pool=")
		return b[:i] + ",kind=" + kind + b[i:]
	}
	for _, b := range backends {
		for _, k := range []string{"connect", "timeout", "reset", "other", "idle"} {
			wantErr[errKey(b, k)] = 0
		}
	}
	wantErr[errKey(backends[0], "timeout")] = 1
	wantErr[errKey(backends[1], "connect")] = 2
	wantErr[errKey(backends[3], "reset")] = 1
	gotErr := r24MetSeries(mfs, "sluice_upstream_errors_total")
	r24MetCompare(t, "sluice_upstream_errors_total", gotErr, wantErr)

	r24MetCompare(t, "sluice_retries_total", r24MetSeries(mfs, "sluice_retries_total"),
		map[string]float64{"pool=web": 0, "pool=dead": 1, "pool=empty": 0, "pool=rst": 0})
	r24MetCompare(t, "sluice_no_backend_total", r24MetSeries(mfs, "sluice_no_backend_total"),
		map[string]float64{"pool=web": 0, "pool=dead": 0, "pool=empty": 1, "pool=rst": 0})
	r24MetCompare(t, "sluice_pool_panic_mode", r24MetSeries(mfs, "sluice_pool_panic_mode"),
		map[string]float64{"pool=web": 0, "pool=dead": 0, "pool=empty": 0, "pool=rst": 0})

	scalar := func(name string) float64 { return r24MetSeries(mfs, name)[""] }
	if v := scalar("sluice_request_bytes_total"); v != reqBytes {
		t.Errorf("sluice_request_bytes_total = %v, want %v", v, reqBytes)
	}
	if v := scalar("sluice_response_bytes_total"); v != respBytes {
		t.Errorf("sluice_response_bytes_total = %v, want %v (the body bytes the clients received)", v, respBytes)
	}

	wantGauge := func(name string, vals map[string]float64) {
		t.Helper()
		r24MetCompare(t, name, r24MetSeries(mfs, name), vals)
	}
	wantGauge("sluice_backend_up", map[string]float64{backends[0]: 1, backends[1]: 1, backends[2]: 0, backends[3]: 1})
	wantGauge("sluice_backend_weight", map[string]float64{backends[0]: 1, backends[1]: 1, backends[2]: 0, backends[3]: 1})
	wantGauge("sluice_outlier_ejections_total", map[string]float64{backends[0]: 0, backends[1]: 0, backends[2]: 0, backends[3]: 0})
	states := map[string]float64{}
	checks := map[string]float64{}
	for _, b := range backends {
		for _, s := range []string{"healthy", "unhealthy", "draining", "ejected"} {
			v := 0.0
			if s == "healthy" {
				v = 1
			}
			states[b+",state="+s] = v
		}
		checks[b+",result=failure"], checks[b+",result=success"] = 0, 0
	}
	// label order: backend, pool, state / result
	wantGauge("sluice_backend_state", states)
	wantGauge("sluice_health_checks_total", checks)
	if t.Failed() {
		t.Logf("rows counted by the test: %v", wantRows)
	}
}

// r24MetBackendFamilies are the families with a backend label.
var r24MetBackendFamilies = []string{
	"sluice_upstream_duration_seconds", "sluice_upstream_connections", "sluice_backend_up",
	"sluice_backend_weight", "sluice_backend_state", "sluice_health_checks_total",
	"sluice_outlier_ejections_total", "sluice_upstream_errors_total",
}

// r24MetBackends is the set of "pool backend" pairs with a series in
// family name (requests_total: rows with a backend only).
func r24MetBackends(mfs map[string]*dto.MetricFamily, name string) map[string]bool {
	out := map[string]bool{}
	mf := mfs[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var pool, backend string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "pool":
				pool = l.GetValue()
			case "backend":
				backend = l.GetValue()
			}
		}
		if backend != "" {
			out[pool+" "+backend] = true
		}
	}
	return out
}

// r24MetSameBackends reports whether every per-backend family has
// series for exactly want (requests_total: for a subset of want).
func r24MetSameBackends(mfs map[string]*dto.MetricFamily, want ...string) string {
	w := map[string]bool{}
	for _, b := range want {
		w[b] = true
	}
	for _, name := range r24MetBackendFamilies {
		got := r24MetBackends(mfs, name)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			return fmt.Sprintf("%s has backends %v, want %v", name, got, w)
		}
	}
	for b := range r24MetBackends(mfs, "sluice_requests_total") {
		if !w[b] {
			return fmt.Sprintf("sluice_requests_total has rows of %s, which is in no pool", b)
		}
	}
	return ""
}

// r24MetGauge is the value of family name's series with pool, backend
// and (when not "") state, and whether there is one.
func r24MetGauge(mfs map[string]*dto.MetricFamily, name, pool, backend, state string) (float64, bool) {
	k := "backend=" + backend + ",pool=" + pool
	if state != "" {
		k += ",state=" + state
	}
	v, ok := r24MetSeries(mfs, name)[k]
	return v, ok
}

// r24MetBackendIs checks up, weight and the four state gauges of one
// backend.
func r24MetBackendIs(t *testing.T, mfs map[string]*dto.MetricFamily, pool, backend string, up, weight float64, state string) {
	t.Helper()
	if v, ok := r24MetGauge(mfs, "sluice_backend_up", pool, backend, ""); !ok || v != up {
		t.Errorf("sluice_backend_up{%s %s} = %v (exists %v), want %v", pool, backend, v, ok, up)
	}
	if v, ok := r24MetGauge(mfs, "sluice_backend_weight", pool, backend, ""); !ok || v != weight {
		t.Errorf("sluice_backend_weight{%s %s} = %v (exists %v), want %v", pool, backend, v, ok, weight)
	}
	for _, s := range []string{"healthy", "unhealthy", "draining", "ejected"} {
		want := 0.0
		if s == state {
			want = 1
		}
		if v, ok := r24MetGauge(mfs, "sluice_backend_state", pool, backend, s); !ok || v != want {
			t.Errorf("sluice_backend_state{%s %s %s} = %v (exists %v), want %v", pool, backend, s, v, ok, want)
		}
	}
}

// TestMetLifecycle follows the per-backend gauges and the series
// sets through DNS churn, an outlier ejection, an admin drain and weight,
// a reload that removes a backend, a pool and the health checks, and a
// rejected reload: each backend's series exist exactly while it is in a
// pool (or draining out of one), its gauges say its state, counters keep
// their values across the churn of others, health checks are counted as
// the backend saw them, and the reload counters and generation follow.
func TestMetLifecycle(t *testing.T) {
	bs, port := r23AdminBackends(t)
	_ = bs
	d := startTestDNS(t, "api.test.")
	d.set("127.0.0.1", "127.0.0.2")
	g1, g2 := r24MetStartBackend(t), r24MetStartBackend(t)
	listen, admin := freePort(t), freePort(t)
	render := func(v2 bool) string {
		s := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\ndrain_timeout: 2s\nretries: {attempts: 1}\n", listen, admin)
		s += "routes:\n  - {match: {path_prefix: /api/}, pool: api}\n  - {pool: web}\n"
		if !v2 {
			s += "  - {match: {path_prefix: /extra/}, pool: extra}\n"
		}
		interval := "100ms"
		if v2 {
			interval = "150ms"
		}
		s += fmt.Sprintf("pools:\n  api:\n    algorithm: round_robin\n    discovery: {dns: {name: api.test., port: %d, type: A, interval: %s, resolver: %s}}\n", port, interval, d.addr)
		s += "  web:\n    algorithm: round_robin\n    outlier_detection: {consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50}\n"
		if !v2 {
			s += "    health_check: {type: http, path: /h, interval: 100ms}\n"
			s += fmt.Sprintf("    backends: [{address: %s}, {address: %s}]\n", g1.addr, g2.addr)
			s += fmt.Sprintf("  extra:\n    backends: [{address: %s}]\n", g2.addr)
		} else {
			s += fmt.Sprintf("    backends: [{address: %s}]\n", g1.addr)
		}
		return s
	}
	path := writeConfig(t, render(false))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	a1, a2, a3 := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port), fmt.Sprintf("127.0.0.3:%d", port)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) int {
		t.Helper()
		resp, err := client.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	adminDo := func(method, p, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+p, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, p, resp.StatusCode, b)
		}
	}
	scrape := func() map[string]*dto.MetricFamily { return r24MetScrape(t, admin) }
	var mfs map[string]*dto.MetricFamily
	settle := func(what string, want ...string) {
		t.Helper()
		var why string
		waitUntil(t, what, 5*time.Second, func() bool {
			mfs = scrape()
			why = r24MetSameBackends(mfs, want...)
			return why == ""
		})
	}
	settle("both DNS backends and both static ones", "api "+a1, "api "+a2, "web "+g1.addr, "web "+g2.addr, "extra "+g2.addr)
	gen0 := r24MetSeries(mfs, "sluice_config_generation")[""]

	for range 4 {
		if st := get("/api/x"); st != 200 {
			t.Fatalf("/api/x: %d", st)
		}
		if st := get("/size/5"); st != 200 {
			t.Fatalf("/size/5: %d", st)
		}
	}
	mfs = scrape()
	for _, b := range []string{"web " + g1.addr, "web " + g2.addr, "api " + a1, "api " + a2} {
		pb := strings.Fields(b)
		route := "/"
		if pb[0] == "api" {
			route = "/api/"
		}
		k := fmt.Sprintf("backend=%s,code=2xx,pool=%s,route=%s", pb[1], pb[0], route)
		if v := r24MetSeries(mfs, "sluice_requests_total")[k]; v != 2 {
			t.Errorf("requests_total{%s} = %v, want 2 (round robin over two)", k, v)
		}
		r24MetBackendIs(t, mfs, pb[0], pb[1], 1, 1, "healthy")
	}

	// An outlier ejection.
	g1.fail.Store(true)
	fails := 0
	for i := 0; i < 12; i++ {
		if get("/size/5") == 500 {
			fails++
		}
		mfs = scrape()
		if v, _ := r24MetGauge(mfs, "sluice_backend_state", "web", g1.addr, "ejected"); v == 1 {
			break
		}
	}
	waitUntil(t, "g1 ejected", 5*time.Second, func() bool {
		mfs = scrape()
		v, _ := r24MetGauge(mfs, "sluice_backend_state", "web", g1.addr, "ejected")
		return v == 1
	})
	if fails != 2 {
		t.Errorf("%d answers 500 before g1 was ejected, want 2 (consecutive_failures)", fails)
	}
	r24MetBackendIs(t, mfs, "web", g1.addr, 0, 0, "ejected")
	r24MetBackendIs(t, mfs, "web", g2.addr, 1, 1, "healthy")
	if v, _ := r24MetGauge(mfs, "sluice_outlier_ejections_total", "web", g1.addr, ""); v != 1 {
		t.Errorf("outlier_ejections_total{web %s} = %v, want 1", g1.addr, v)
	}
	if v := r24MetSeries(mfs, "sluice_requests_total")[fmt.Sprintf("backend=%s,code=5xx,pool=web,route=/", g1.addr)]; v != float64(fails) {
		t.Errorf("requests_total{g1, 5xx} = %v, want %d", v, fails)
	}

	// DNS churn: .1 leaves (nothing in flight: its series go at once), .3
	// joins; .2 keeps its counts.
	d.set("127.0.0.2", "127.0.0.3")
	settle("DNS churn", "api "+a2, "api "+a3, "web "+g1.addr, "web "+g2.addr, "extra "+g2.addr)
	if v := r24MetSeries(mfs, "sluice_requests_total")[fmt.Sprintf("backend=%s,code=2xx,pool=api,route=/api/", a2)]; v != 2 {
		t.Errorf("requests_total{.2 2xx} after the churn = %v, want 2", v)
	}
	r24MetBackendIs(t, mfs, "api", a3, 1, 1, "healthy")

	// Admin drain and weight.
	adminDo("POST", "/admin/pools/api/backends/"+a2+"/drain", "")
	adminDo("PUT", "/admin/pools/api/backends/"+a3+"/weight", `{"weight": 5}`)
	mfs = scrape()
	r24MetBackendIs(t, mfs, "api", a2, 0, 0, "draining")
	r24MetBackendIs(t, mfs, "api", a3, 1, 5, "healthy")
	adminDo("POST", "/admin/pools/api/backends/"+a2+"/undrain", "")
	mfs = scrape()
	r24MetBackendIs(t, mfs, "api", a2, 1, 1, "healthy")

	// A reload: g2 leaves web, pool extra goes, the health checks stop.
	replaceFile(t, path, render(true))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	settle("g2 and extra gone", "api "+a2, "api "+a3, "web "+g1.addr)
	for _, name := range []string{"sluice_retries_total", "sluice_no_backend_total", "sluice_pool_panic_mode"} {
		if got := r24MetSeries(mfs, name); len(got) != 2 || got["pool=api"] != 0 && name == "sluice_pool_panic_mode" {
			t.Errorf("%s after pool extra left: %v, want pools api and web only", name, got)
		}
	}
	for k := range r24MetSeries(mfs, "sluice_requests_total") {
		if strings.Contains(k, "route=/extra/") || strings.Contains(k, "pool=extra") {
			t.Errorf("requests_total{%s} left after route and pool extra went", k)
		}
	}
	for k := range r24MetSeries(mfs, "sluice_request_duration_seconds") {
		if k == "route=/extra/" {
			t.Errorf("request_duration_seconds{%s} left after route extra went", k)
		}
	}
	succ := r24MetSeries(mfs, "sluice_health_checks_total")["backend="+g1.addr+",pool=web,result=success"]
	fail := r24MetSeries(mfs, "sluice_health_checks_total")["backend="+g1.addr+",pool=web,result=failure"]
	if saw := float64(g1.probes.Load()); fail != 0 || succ < saw-1 || succ > saw {
		t.Errorf("health_checks_total{web g1}: success %v failure %v; g1 answered %v probes with 200", succ, fail, saw)
	}
	r24MetBackendIs(t, mfs, "web", g1.addr, 0, 0, "ejected")
	if v := r24MetSeries(mfs, "sluice_config_reloads_total"); v["result=success"] != 1 || v["result=failure"] != 0 {
		t.Errorf("config_reloads_total = %v, want success 1, failure 0", v)
	}
	if v := r24MetSeries(mfs, "sluice_config_generation")[""]; v != gen0+1 {
		t.Errorf("config_generation = %v, want %v", v, gen0+1)
	}
	replaceFile(t, path, "routes: [\n")
	if code, _ := adminReload(t, admin); code != 400 {
		t.Errorf("bad reload: %d, want 400", code)
	}
	mfs = scrape()
	if v := r24MetSeries(mfs, "sluice_config_reloads_total"); v["result=success"] != 1 || v["result=failure"] != 1 {
		t.Errorf("config_reloads_total = %v, want success 1, failure 1", v)
	}
	if v := r24MetSeries(mfs, "sluice_config_generation")[""]; v != gen0+1 {
		t.Errorf("config_generation after a rejected reload = %v, want %v", v, gen0+1)
	}
}
