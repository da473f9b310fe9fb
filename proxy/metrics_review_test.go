package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"sluice/metrics"
)

// reviewFamily returns the metrics of one family.
func reviewFamily(t *testing.T, m *metrics.Metrics, name string) []*dto.Metric {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func reviewScalar(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	family := reviewFamily(t, m, name)
	if len(family) == 0 {
		return -1
	}
	if g := family[0].GetGauge(); g != nil {
		return g.GetValue()
	}
	return family[0].GetCounter().GetValue()
}

// reviewUpstreamCount is the sample count of
// sluice_upstream_duration_seconds for backend.
func reviewUpstreamCount(t *testing.T, m *metrics.Metrics, backend string) uint64 {
	t.Helper()
	for _, mt := range reviewFamily(t, m, "sluice_upstream_duration_seconds") {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "backend" && l.GetValue() == backend {
				return mt.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func reviewSum(got map[string]float64, parts ...string) float64 {
	s := 0.0
outer:
	for k, v := range got {
		for _, p := range parts {
			if !strings.Contains(k, p) {
				continue outer
			}
		}
		s += v
	}
	return s
}

// TestMetricsReviewRetryCountedOnce: requests retried from a refusing
// backend to a good one are counted once, under the good backend; the
// retries, connect errors and upstream histogram agree. (Existing tests
// count connect errors without retries, and retries without the series.)
func TestMetricsReviewRetryCountedOnce(t *testing.T) {
	good := startBackend(t, "good", nil)
	dead := freeAddr(t)
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: p }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
`, dead, good.addr()), m)
	c := testClient(t)
	const n = 10
	for range n {
		if code, _, _ := get(t, c, "http://"+px.addr+"/x", nil); code != 200 {
			t.Fatalf("status %d, want 200", code)
		}
	}
	req := gatherCounts(t, m, "sluice_requests_total")
	if v := reviewSum(req, `backend="`+good.addr()+`"`, `code="2xx"`); v != n {
		t.Errorf("requests_total 2xx on the good backend = %v, want %d", v, n)
	}
	if v := reviewSum(req); v != n {
		t.Errorf("requests_total over all rows = %v, want %d (each request once): %v", v, n, req)
	}
	retries := reviewSum(gatherCounts(t, m, "sluice_retries_total"))
	connect := reviewSum(gatherCounts(t, m, "sluice_upstream_errors_total"), `backend="`+dead+`"`, `kind="connect"`)
	if retries != connect || retries < 1 || retries > n {
		t.Errorf("retries_total = %v, connect errors on the dead backend = %v: want equal, in 1..%d", retries, connect, n)
	}
	if got := reviewUpstreamCount(t, m, good.addr()); got != n {
		t.Errorf("upstream_duration count on good = %d, want %d", got, n)
	}
	if got := reviewUpstreamCount(t, m, dead); got != 0 {
		t.Errorf("upstream_duration count on dead = %d, want 0", got)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("requests_in_flight = %v, want 0", v)
	}
}

// TestMetricsReviewTimeoutAndAbort: a response timeout is one 504 with
// kind="timeout" and no upstream sample; a client that leaves during a
// slow upstream leaves requests_in_flight at 0 once the request ends.
func TestMetricsReviewTimeoutAndAbort(t *testing.T) {
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
		io.WriteString(w, "late\n")
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: p }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }] }
timeouts: { response: 150ms }
retries: { attempts: 1 }
`, slow.addr()), m)
	c := testClient(t)
	if code, _, _ := get(t, c, "http://"+px.addr+"/t", nil); code != 504 {
		t.Fatalf("status %d, want 504", code)
	}
	// A client that leaves before the answer.
	conn, _ := dialProxy(t, px.addr)
	io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	time.Sleep(500 * time.Millisecond)

	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if v := reviewSum(errs, `kind="timeout"`); v != 2 {
		t.Errorf("timeout errors = %v, want 2: %v", v, errs)
	}
	if v := reviewSum(errs) - reviewSum(errs, `kind="timeout"`); v != 0 {
		t.Errorf("other errors = %v, want 0: %v", v, errs)
	}
	req := gatherCounts(t, m, "sluice_requests_total")
	if v := reviewSum(req, `backend="`+slow.addr()+`"`, `code="5xx"`); v != 2 {
		t.Errorf("requests_total 5xx = %v, want 2: %v", v, req)
	}
	if got := reviewUpstreamCount(t, m, slow.addr()); got != 0 {
		t.Errorf("upstream_duration count = %d, want 0", got)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("requests_in_flight = %v, want 0", v)
	}
}

// TestMetricsReviewBytes: body bytes for a POST, HEAD, 204, a chunked
// answer and a 103 before the answer.
func TestMetricsReviewBytes(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/chunked":
			f := w.(http.Flusher)
			for range 3 {
				io.WriteString(w, strings.Repeat("c", 100))
				f.Flush()
			}
		case "/103":
			w.Header().Set("Link", "</s.css>; rel=preload")
			w.WriteHeader(103)
			io.WriteString(w, "0123456789")
		default:
			io.WriteString(w, strings.Repeat("r", 50))
		}
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: p }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }] }
`, b.addr()), m)
	conn, br := dialProxy(t, px.addr)
	send := func(raw string, method string) {
		t.Helper()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 200 {
				return
			}
		}
	}
	step := func(name string, wantIn, wantOut float64) {
		t.Helper()
		in, out := reviewScalar(t, m, "sluice_request_bytes_total"), reviewScalar(t, m, "sluice_response_bytes_total")
		if in != wantIn || out != wantOut {
			t.Errorf("after %s: request_bytes %v, response_bytes %v; want %v, %v", name, in, out, wantIn, wantOut)
		}
	}
	send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nabcdefg", "POST")
	step("POST 7 -> 50", 7, 50)
	send("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "POST")
	step("chunked POST 5 -> 50", 12, 100)
	send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
	step("HEAD", 12, 100)
	send("GET /204 HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	step("204", 12, 100)
	send("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	step("chunked 300", 12, 400)
	send("GET /103 HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	step("103 then 10", 12, 410)
	req := gatherCounts(t, m, "sluice_requests_total")
	if v := reviewSum(req, `code="2xx"`); v != 6 {
		t.Errorf("2xx = %v, want 6", v)
	}
	if v := reviewSum(req, `code="1xx"`); v != 0 {
		t.Errorf("1xx = %v, want 0 (a 103 is no answer)", v)
	}
}

// TestMetricsReviewReset: a backend that closes the connection after
// reading the request: one reset per attempt, 502.
func TestMetricsReviewReset(t *testing.T) {
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
				br := bufio.NewReader(c)
				http.ReadRequest(br)
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}(c)
		}
	}()
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: p }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }] }
retries: { attempts: 1 }
`, ln.Addr().String()), m)
	c := testClient(t)
	for range 3 {
		if code, _, _ := get(t, c, "http://"+px.addr+"/r", nil); code != 502 {
			t.Errorf("status %d, want 502", code)
		}
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	if v := reviewSum(errs, `kind="reset"`); v != 3 {
		t.Errorf("reset errors = %v, want 3: %v", v, errs)
	}
}
