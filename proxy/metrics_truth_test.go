package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// truthSend writes raw on a fresh connection to addr and reads one
// final answer (skipping 1xx), returning the status and the body bytes
// the client actually received.
func truthSend(t *testing.T, addr, raw, method string) (int, int) {
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
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 {
			return resp.StatusCode, int(n)
		}
	}
}

// truthScrape parses the registry's text exposition with expfmt, as
// Prometheus would, failing the test on any parse error.
func truthScrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	enc := expfmt.NewEncoder(&sb, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := p.TextToMetricFamilies(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	return parsed
}

// TestMetricsTruthMixed drives a known mix of requests and checks
// that the access log, the metrics and the bytes the client received all
// agree, request by request and in sum.
func TestMetricsTruthMixed(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		case "/204":
			w.WriteHeader(204)
		case "/chunked":
			f := w.(http.Flusher)
			for range 4 {
				io.WriteString(w, strings.Repeat("c", 111))
				f.Flush()
			}
		case "/slow":
			time.Sleep(900 * time.Millisecond)
			io.WriteString(w, "late")
		default:
			io.WriteString(w, strings.Repeat("r", 37))
		}
	})
	dead := freeAddr(t)
	m := metrics.New("test")
	y := fmt.Sprintf(`routes:
  - { match: { path_prefix: /deadpool/ }, pool: dead }
  - { match: { path_prefix: /nobody/ }, pool: empty }
  - { match: { host: a.example }, pool: p }
pools:
  p: { backends: [{ address: %s }] }
  dead: { backends: [{ address: %s }] }
  empty: { backends: [{ address: %s, weight: 0 }] }
timeouts: { response: 600ms }
retries: { attempts: 1 }
`, b.addr(), dead, b.addr())
	px := startProxyWith(t, y, m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)

	type req struct {
		raw, method string
	}
	reqs := []req{
		{"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "GET"},
		{"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", "POST"},
		{"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "POST"},
		{"HEAD / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "HEAD"},
		{"GET /304 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "GET"},
		{"GET /204 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "GET"},
		{"GET /chunked HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "GET"},
		{"GET /slow HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", "GET"},
		{"GET /x HTTP/1.1\r\nHost: nothing.example\r\nConnection: close\r\n\r\n", "GET"},
		{"HEAD /x HTTP/1.1\r\nHost: nothing.example\r\nConnection: close\r\n\r\n", "HEAD"},
		{"POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "POST"},
		{"GET /deadpool/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET"},
		{"GET /nobody/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET"},
		{"PUT /nobody/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd", "PUT"},
	}
	var sentIn, gotOut int
	codes := map[int]int{}
	wantIn := []int{0, 5, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4}
	for i, r := range reqs {
		code, n := truthSend(t, px.addr, r.raw, r.method)
		codes[code/100]++
		gotOut += n
		sentIn += wantIn[i]
		t.Logf("%d %q -> %d, %d body bytes", i, strings.SplitN(r.raw, "\r\n", 2)[0], code, n)
	}
	px.proxy.SetAccessLog(nil)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	lines := accessLogLines(t, path)
	if len(lines) != len(reqs) {
		t.Fatalf("%d access log lines, want %d", len(lines), len(reqs))
	}
	var logIn, logOut float64
	for _, l := range lines {
		logIn += l["bytes_in"].(float64)
		logOut += l["bytes_out"].(float64)
	}
	in, out := reviewScalar(t, m, "sluice_request_bytes_total"), reviewScalar(t, m, "sluice_response_bytes_total")
	if in != float64(sentIn) || logIn != float64(sentIn) {
		t.Errorf("request bytes: metric %v, log %v, client sent %d", in, logIn, sentIn)
	}
	if out != float64(gotOut) || logOut != float64(gotOut) {
		t.Errorf("response bytes: metric %v, log %v, client got %d", out, logOut, gotOut)
	}
	rows := gatherCounts(t, m, "sluice_requests_total")
	for class := 1; class <= 5; class++ {
		if v := reviewSum(rows, fmt.Sprintf(`code="%dxx"`, class)); v != float64(codes[class]) {
			t.Errorf("requests_total %dxx = %v, client saw %d", class, v, codes[class])
		}
	}
	// Every line's upstream_error agrees with upstream_errors_total, and
	// every exchange without one with the upstream histogram.
	okExchanges := 0
	failed := map[string]int{}
	for _, l := range lines {
		if l["upstream_addr"] == "" {
			continue
		}
		if e := l["upstream_error"].(string); e != "" {
			failed[e]++
		} else {
			okExchanges++
		}
	}
	var got uint64
	for _, mt := range reviewFamily(t, m, "sluice_upstream_duration_seconds") {
		got += mt.GetHistogram().GetSampleCount()
	}
	if int(got) != okExchanges {
		t.Errorf("upstream_duration count %d, log says %d answered exchanges", got, okExchanges)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if v := reviewSum(errs, `kind="timeout"`); v != float64(failed["timeout"]) {
		t.Errorf("timeout errors %v, log %d", v, failed["timeout"])
	}
	if v := reviewSum(errs, `kind="connect"`); v != float64(failed["connect"]) {
		t.Errorf("connect errors %v, log %d", v, failed["connect"])
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("in flight %v", v)
	}
	fams := truthScrape(t, m)
	h := fams["sluice_request_duration_seconds"]
	var cnt uint64
	for _, mt := range h.GetMetric() {
		cnt += mt.GetHistogram().GetSampleCount()
	}
	routed := 0
	for _, l := range lines {
		if l["route"] != "" {
			routed++
		}
	}
	if int(cnt) != routed {
		t.Errorf("request_duration count %d, routed requests in the log %d", cnt, routed)
	}
}
