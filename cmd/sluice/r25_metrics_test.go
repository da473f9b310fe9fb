package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// r25MetricsSum sums family name's series whose labels contain
// every "k=v" of match (a histogram's value is its count).
func r25MetricsSum(series map[string]float64, match ...string) float64 {
	var n float64
next:
	for k, v := range series {
		ls := strings.Split(k, ",")
		for _, m := range match {
			found := false
			for _, l := range ls {
				if l == m {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		n += v
	}
	return n
}

// TestMetricsHostileInputBoundsSeries sends 1000 requests with
// random Host headers (valid names, names with ports, garbage that the
// handler refuses), random paths, random methods, random X-Request-Id
// and absolute-form targets, over keep-alive connections, and checks
// that the set of sluice_* series is the same before and after (no label
// takes a value from a request), that every request the clients got an
// answer for is counted once in sluice_requests_total under the status
// class it got, that the route histograms count the routed ones, and
// that the in-flight and connection gauges are back at 0.
func TestMetricsHostileInputBoundsSeries(t *testing.T) {
	good := r24MetStartBackend(t)
	listen, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %s
admin: {listen: %s}
watch_config: false
log: {level: error}
routes:
  - {match: {host: a.test}, pool: web}
  - {match: {host: "*.w.test", path_prefix: /x/}, pool: web}
  - {match: {path_prefix: /api/}, pool: web}
pools:
  web: {backends: [{address: %s}]}
`, listen, admin, good.addr)
	runInProcess(t, writeConfig(t, cfg))
	waitReady(t, "http://"+admin+"/readyz")

	names := func(mfs map[string]map[string]float64) []string {
		var out []string
		for f, ss := range mfs {
			for k := range ss {
				out = append(out, f+"{"+k+"}")
			}
		}
		sort.Strings(out)
		return out
	}
	scrape := func() map[string]map[string]float64 {
		mfs := r24MetScrape(t, admin)
		out := map[string]map[string]float64{}
		for name := range mfs {
			if strings.HasPrefix(name, "sluice_") {
				out[name] = r24MetSeries(mfs, name)
			}
		}
		return out
	}
	before := scrape()

	rng := rand.New(rand.NewPCG(25, 1000))
	letters := "abcdefghijklmnopqrstuvwxyz0123456789-"
	word := func(n int) string {
		b := make([]byte, 1+rng.IntN(n))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	pathChars := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%"
	randPath := func() string {
		var b strings.Builder
		switch rng.IntN(5) {
		case 0:
			b.WriteString("/api/")
		case 1:
			b.WriteString("/x/")
		case 2:
			// The backend's 2xx, 3xx and 5xx (on route a.test/).
			return [...]string{"/size/" + strconv.Itoa(rng.IntN(5000)), "/304", "/204", "/err500"}[rng.IntN(4)]
		default:
			b.WriteString("/")
		}
		for range rng.IntN(40) {
			c := pathChars[rng.IntN(len(pathChars))]
			if c == '%' {
				fmt.Fprintf(&b, "%%%02X", rng.IntN(256))
				continue
			}
			b.WriteByte(c)
		}
		return b.String()
	}
	randHost := func() string {
		switch rng.IntN(8) {
		case 0, 6:
			return "a.test"
		case 1:
			return word(8) + ".w.test"
		case 2:
			return word(10) + "." + word(10) + ":" + strconv.Itoa(rng.IntN(70000))
		case 3:
			// Refused by the handler (400), each its own way. (A Host
			// with a space, a slash or a bad IPv6 literal fasthttp refuses
			// itself, uncounted as README says.)
			return [...]string{"u@" + word(5), word(5) + "\"" + word(3), word(5) + "..x", strings.Repeat("h", 300), ":" + strconv.Itoa(rng.IntN(100))}[rng.IntN(5)]
		case 4:
			return "[::" + strconv.Itoa(rng.IntN(10000)) + "]:" + strconv.Itoa(rng.IntN(70000))
		case 5:
			return strings.ToUpper(word(12))
		default:
			return word(30)
		}
	}
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PURGE", "BREW", "M-SEARCH", "PROPFIND"}

	gotClass := map[string]float64{}
	bodies := map[string]int{}
	const total = 1000
	const perConn = 50
	sent := 0
	for sent < total {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(8 * time.Second))
		br := bufio.NewReader(c)
		for i := 0; i < perConn && sent < total; i++ {
			method := methods[rng.IntN(len(methods))]
			if rng.IntN(10) == 0 {
				method = strings.ToUpper(word(7))
			}
			target := randPath()
			host := randHost()
			if rng.IntN(10) == 0 {
				target = "http://" + word(12) + ".w.test" + target
			}
			req := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nX-Request-Id: " + word(30) + "\r\n"
			if method == "POST" || method == "PUT" {
				req += "Content-Length: 3\r\n\r\nabc"
			} else {
				req += "\r\n"
			}
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatalf("request %d: %v", sent, err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("request %d (%.80q): %v", sent, req, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(body) > 60 {
				body = body[:60]
			}
			bodies[fmt.Sprintf("%d %q", resp.StatusCode, body)]++ // for the log
			sent++
			gotClass[fmt.Sprintf("%dxx", resp.StatusCode/100)]++
			if resp.Close {
				break
			}
		}
		c.Close()
	}

	var after map[string]map[string]float64
	waitUntil(t, "the gauges at rest", 5*time.Second, func() bool {
		after = scrape()
		return after["sluice_requests_in_flight"][""] == 0 && after["sluice_downstream_connections"][""] == 0
	})
	nb, na := names(before), names(after)
	if strings.Join(nb, "\n") != strings.Join(na, "\n") {
		have := map[string]bool{}
		for _, s := range nb {
			have[s] = true
		}
		var extra []string
		for _, s := range na {
			if !have[s] {
				extra = append(extra, s)
			}
		}
		t.Errorf("%d sluice series before %d random requests, %d after; new: %v", len(nb), total, len(na), extra)
	}
	for class, n := range gotClass {
		d := r25MetricsSum(after["sluice_requests_total"], "code="+class) - r25MetricsSum(before["sluice_requests_total"], "code="+class)
		if d != n {
			t.Errorf("sluice_requests_total{code=%s} grew by %v; the clients got %v such answers", class, d, n)
		}
	}
	routed := r25MetricsSum(after["sluice_requests_total"]) - r25MetricsSum(after["sluice_requests_total"], "route=")
	hist := r25MetricsSum(after["sluice_request_duration_seconds"])
	if routed != hist {
		t.Errorf("request_duration_seconds counts %v requests; requests_total has %v with a route", hist, routed)
	}
	t.Logf("classes %v; %v routed; bodies %v", gotClass, routed, bodies)
}

// r25MetricsFlat is one scrape's counters and histograms, as
// "name{labels}" -> value: counters by value, histograms as their
// _count, _sum and each _bucket.
func r25MetricsFlat(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "sluice_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			k := "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name+k] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[name+"_count"+k] = float64(h.GetSampleCount())
				out[name+"_sum"+k] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[fmt.Sprintf("%s_bucket%s le=%g", name, k, b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

// TestMetricsCountersNeverGoBack scrapes /metrics every 30 ms
// while traffic runs and the configuration changes under it: a reload
// that replaces every backend's client (new timeouts), admin weight,
// drain and undrain, a pool and its route removed and added back, a
// backend removed and added back, a route pointed at another pool and
// back. Every counter and histogram series seen in two scrapes in a row
// must not have gone down; the series of what stays configured all along
// (route a.test/ to pool web, backend g1 of web, pool web) must be in
// every scrape; those of what left must be gone once it has left (README,
// Bounded labels); and at the end the route histogram of a.test/ counts
// exactly the requests the client sent there, the in-flight gauge is 0.
func TestMetricsCountersNeverGoBack(t *testing.T) {
	g1, g2, g3 := r24MetStartBackend(t), r24MetStartBackend(t), r24MetStartBackend(t)
	listen, admin := freePort(t), freePort(t)
	type v struct {
		response   int
		web        []string
		extra, cTo string
	}
	render := func(c v) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\ndrain_timeout: 2s\n", listen, admin)
		fmt.Fprintf(&b, "timeouts: {response: %dms}\nretries: {attempts: 2}\n", c.response)
		b.WriteString("routes:\n  - {match: {host: a.test}, pool: web}\n")
		fmt.Fprintf(&b, "  - {match: {host: c.test}, pool: %s}\n", c.cTo)
		if c.extra != "" {
			b.WriteString("  - {match: {host: b.test}, pool: extra}\n")
		}
		b.WriteString("pools:\n  web:\n    algorithm: round_robin\n    backends:\n")
		for _, a := range c.web {
			fmt.Fprintf(&b, "      - {address: %s}\n", a)
		}
		if c.extra != "" {
			fmt.Fprintf(&b, "  extra:\n    backends: [{address: %s}, {address: %s}]\n", c.extra, g1.addr)
		}
		return b.String()
	}
	cur := v{response: 3000, web: []string{g1.addr, g2.addr}, extra: g3.addr, cTo: "web"}
	path := writeConfig(t, render(cur))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")

	var (
		mu      sync.Mutex
		scrapes []map[string]float64
		errs    []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	scrapeOnce := func() map[string]float64 {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		mfs, err := (&r25MetricsParser{}).parse(string(b))
		if err != nil {
			mu.Lock()
			errs = append(errs, err.Error())
			mu.Unlock()
			return nil
		}
		return r25MetricsFlat(mfs)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if f := scrapeOnce(); f != nil {
				mu.Lock()
				scrapes = append(scrapes, f)
				mu.Unlock()
			}
		}
	}()
	var sentA atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 2}
	client := &http.Client{Transport: tr, Timeout: 8 * time.Second}
	defer tr.CloseIdleConnections()
	wg.Add(1)
	go func() {
		defer wg.Done()
		hosts := []string{"a.test", "b.test", "c.test"}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", "http://"+listen+"/size/10", nil)
			req.Host = hosts[i%3]
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if req.Host == "a.test" {
				sentA.Add(1)
			}
		}
	}()
	// A slow request on each web backend, to be in flight across the
	// changes (round robin: two in a row take both).
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+listen+"/slow", nil)
			req.Host = "a.test"
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sentA.Add(1)
			}
		}()
	}
	pause := func() { time.Sleep(250 * time.Millisecond) }
	reload := func(c v) {
		t.Helper()
		cur = c
		replaceFile(t, path, render(c))
		if code, body := adminReload(t, admin); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		pause()
	}
	adminDo := func(method, p, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+p, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, p, resp.StatusCode, b)
		}
		pause()
	}
	gone := func(what string, subs ...string) {
		t.Helper()
		waitUntil(t, what, 5*time.Second, func() bool {
			f := scrapeOnce()
			for k := range f {
				for _, s := range subs {
					if strings.Contains(k, s) {
						return false
					}
				}
			}
			return f != nil
		})
	}
	pause()
	reload(v{response: 3001, web: cur.web, extra: cur.extra, cTo: "web"})
	adminDo("PUT", "/admin/pools/web/backends/"+g2.addr+"/weight", "3")
	adminDo("POST", "/admin/pools/web/backends/"+g1.addr+"/drain", "")
	adminDo("POST", "/admin/pools/web/backends/"+g1.addr+"/undrain", "")
	reload(v{response: 3001, web: cur.web, cTo: "web"}) // pool extra and route b.test go
	gone("pool extra's series", `pool=extra`, `route=b.test/`)
	reload(v{response: 3001, web: cur.web, extra: g3.addr, cTo: "web"})                    // back
	reload(v{response: 3001, web: []string{g1.addr}, extra: g3.addr, cTo: "web"})          // g2 leaves
	reload(v{response: 3001, web: []string{g1.addr, g2.addr}, extra: g3.addr, cTo: "web"}) // and is back
	reload(v{response: 3001, web: cur.web, extra: g3.addr, cTo: "extra"})
	reload(v{response: 3001, web: cur.web, extra: g3.addr, cTo: "web"})
	gone("route c.test/'s rows through extra", `pool=extra,route=c.test/`)
	reload(v{response: 3002, web: cur.web, extra: g3.addr, cTo: "web"})
	close(stop)
	wg.Wait()
	tr.CloseIdleConnections()

	var final map[string]float64
	waitUntil(t, "in flight at 0", 5*time.Second, func() bool {
		mfs := r24MetScrape(t, admin)
		final = r25MetricsFlat(mfs)
		return r24MetSeries(mfs, "sluice_requests_in_flight")[""] == 0
	})
	if got, want := final[`sluice_request_duration_seconds_count{route=a.test/}`], float64(sentA.Load()); got != want {
		t.Errorf("request_duration_seconds_count{route=a.test/} = %v, the client had %v answers from a.test", got, want)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, e := range errs {
		t.Errorf("a scrape did not parse: %s", e)
	}
	stable := func(k string) bool {
		return strings.Contains(k, "route=a.test/") && !strings.Contains(k, "backend="+g2.addr) ||
			strings.Contains(k, "backend="+g1.addr+",") && strings.Contains(k, "pool=web") ||
			strings.Contains(k, "{pool=web}")
	}
	reported := map[string]bool{}
	for i := 1; i < len(scrapes); i++ {
		prev, now := scrapes[i-1], scrapes[i]
		for k, pv := range prev {
			nv, ok := now[k]
			switch {
			case !ok && stable(k) && !reported[k]:
				reported[k] = true
				t.Errorf("scrape %d: %s vanished (was %v); it stays configured all along", i, k, pv)
			case ok && nv < pv && !reported[k]:
				reported[k] = true
				t.Errorf("scrape %d: %s went from %v to %v", i, k, pv, nv)
			}
		}
	}
	t.Logf("%d scrapes, %d requests to a.test", len(scrapes), sentA.Load())
}

// r25MetricsParser parses an exposition, as r24MetScrape does,
// without a *testing.T (from a goroutine).
type r25MetricsParser struct{}

func (r25MetricsParser) parse(text string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// TestMetricsClientAbortsSettle: clients that leave while their
// request waits for the backend (a 504 after timeouts.response), and
// clients that leave in the middle of an upload (fasthttp's, never
// routed), leave the gauges at rest: no request in flight, no client
// connection, and the upstream connection gauge equal to what the
// backend sees; the abandoned requests are counted once each, as the
// 504 sluice answered (README: the exchange is not cancelled), the
// upstream errors as timeouts.
func TestMetricsClientAbortsSettle(t *testing.T) {
	good := r24MetStartBackend(t)
	listen, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %s
admin: {listen: %s}
watch_config: false
log: {level: error}
timeouts: {response: 700ms, client_read: 5s}
retries: {attempts: 1}
routes:
  - {match: {host: a.test}, pool: web}
pools:
  web: {backends: [{address: %s}]}
`, listen, admin, good.addr)
	runInProcess(t, writeConfig(t, cfg))
	waitReady(t, "http://"+admin+"/readyz")
	const n = 8
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	}
	for range n {
		// Half an upload: fasthttp waits for the rest.
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789")
	}
	waitUntil(t, "the slow requests in flight", 5*time.Second, func() bool {
		return r24MetSeries(r24MetScrape(t, admin), "sluice_requests_in_flight")[""] == n
	})
	for _, c := range conns {
		c.Close()
	}
	backend := "backend=" + good.addr + ",pool=web"
	var mfs map[string]*dto.MetricFamily
	waitUntil(t, "the gauges at rest", 5*time.Second, func() bool {
		mfs = r24MetScrape(t, admin)
		return r24MetSeries(mfs, "sluice_requests_in_flight")[""] == 0 &&
			r24MetSeries(mfs, "sluice_downstream_connections")[""] == 0 &&
			r24MetSeries(mfs, "sluice_upstream_connections")[backend] == float64(good.open.Load())
	})
	req := r24MetSeries(mfs, "sluice_requests_total")
	if got := req["backend="+good.addr+",code=5xx,pool=web,route=a.test/"]; got != n {
		t.Errorf("requests_total{web 5xx} = %v, want %d (the 504s of the abandoned requests)", got, n)
	}
	if got := r25MetricsSum(req); got != n {
		t.Errorf("requests_total sums to %v, want %d: the aborted uploads never reached the handler", got, n)
	}
	if got := r24MetSeries(mfs, "sluice_upstream_errors_total")["backend="+good.addr+",kind=timeout,pool=web"]; got != n {
		t.Errorf("upstream_errors_total{timeout} = %v, want %d", got, n)
	}
	if got := r24MetSeries(mfs, "sluice_request_duration_seconds")["route=a.test/"]; got != n {
		t.Errorf("request_duration_seconds_count{a.test/} = %v, want %d", got, n)
	}
	if got := r24MetSeries(mfs, "sluice_upstream_duration_seconds")[backend]; got != 0 {
		t.Errorf("upstream_duration_seconds_count = %v, want 0 (no answer passed on)", got)
	}
	if got := r24MetSeries(mfs, "sluice_request_bytes_total")[""]; got != 0 {
		t.Errorf("request_bytes_total = %v, want 0", got)
	}
}
