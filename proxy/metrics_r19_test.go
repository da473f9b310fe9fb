package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/metrics"
)

// TestMetricsOddAnswersExact: the series agree with what the
// client saw, request by request, for answers the other metric tests do
// not drive: pipelined requests (a HEAD among them), a 503 at
// max_conns_per_backend (kind="other", no retry with attempts 1, not a
// no_backend), a 502 over max_response_bytes (kind="other"), a 504 at
// timeouts.response (kind="timeout"), an absolute-form target (counted
// under the route its host picks), OPTIONS * and HTTP/1.0 without Host.
// Upstream and request histograms count in seconds, only for the answers
// passed on and the routed requests.
func TestMetricsOddAnswersExact(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			// Held until the second request has met the connection limit.
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "slow")
		case "/big":
			io.WriteString(w, strings.Repeat("x", 3000))
		case "/hang":
			time.Sleep(1500 * time.Millisecond)
		default:
			io.WriteString(w, "0123456789")
		}
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: / }, pool: p }
  - { match: { host: a.example }, pool: p }
pools:
  p: { backends: [{ address: %s }] }
limits: { max_conns_per_backend: 1, max_response_bytes: 1000 }
timeouts: { response: 1s }
retries: { attempts: 1 }
`, b.addr()), m)

	classes := map[string]int{} // route + class -> answers the client got
	got := 0                    // body bytes the client got
	answered := 0               // backend answers passed on
	count := func(route string, code, n int) {
		classes[fmt.Sprintf("%s %dxx", route, code/100)]++
		got += n
		if code < 500 {
			answered++
		}
	}

	c, br := dialProxy(t, px.addr)
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, meth := range []string{"GET", "GET", "HEAD"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: meth})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		count("/", resp.StatusCode, int(n))
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	send := func() {
		code, n := truthSend(t, px.addr, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET")
		mu.Lock()
		count("/", code, n)
		mu.Unlock()
	}
	wg.Go(send)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first /slow never reached the backend")
	}
	send() // the one connection is busy: 503
	close(release)
	wg.Wait()
	if classes["/ 5xx"] != 1 {
		t.Fatalf("two requests over max_conns_per_backend 1 got %v, want one 503", classes)
	}
	for _, r := range []struct{ route, raw, method string }{
		{"/", "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET"},
		{"/", "GET /hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET"},
		{"a.example/", "GET http://a.example/abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET"},
		{"/", "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "OPTIONS"},
		{"/", "GET / HTTP/1.0\r\n\r\n", "GET"},
	} {
		code, n := truthSend(t, px.addr, r.raw, r.method)
		count(r.route, code, n)
	}
	if classes["/ 5xx"] != 3 {
		t.Fatalf("answers %v: want 3 errors on route / (503, 502, 504)", classes)
	}

	rows := gatherCounts(t, m, "sluice_requests_total")
	for _, route := range []string{"/", "a.example/"} {
		for class := 1; class <= 5; class++ {
			want := classes[fmt.Sprintf("%s %dxx", route, class)]
			key := fmt.Sprintf(`route=%q,pool="p",backend=%q,code="%dxx"`, route, b.addr(), class)
			if rows[key] != float64(want) {
				t.Errorf("sluice_requests_total{%s} = %v, want %d", key, rows[key], want)
			}
		}
	}
	if v := reviewSum(rows, `backend=""`); v != 0 {
		t.Errorf("requests counted without a backend: %v", v)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	for kind, want := range map[string]float64{"other": 2, "timeout": 1, "connect": 0, "reset": 0, "idle": 0} {
		if v := reviewSum(errs, `kind="`+kind+`"`); v != want {
			t.Errorf("sluice_upstream_errors_total{kind=%q} = %v, want %v", kind, v, want)
		}
	}
	if v := reviewSum(gatherCounts(t, m, "sluice_retries_total")); v != 0 {
		t.Errorf("retries %v with attempts 1", v)
	}
	if v := reviewSum(gatherCounts(t, m, "sluice_no_backend_total")); v != 0 {
		t.Errorf("no_backend %v: a connection limit is not a missing backend", v)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("in flight %v after every answer", v)
	}
	if v := reviewScalar(t, m, "sluice_response_bytes_total"); v != float64(got) {
		t.Errorf("sluice_response_bytes_total %v, the client got %d body bytes", v, got)
	}
	if v := reviewScalar(t, m, "sluice_request_bytes_total"); v != 0 {
		t.Errorf("sluice_request_bytes_total %v, no request had a body", v)
	}
	if n := reviewUpstreamCount(t, m, b.addr()); n != uint64(answered) {
		t.Errorf("upstream_duration count %d, %d answers passed on", n, answered)
	}
	for _, mt := range reviewFamily(t, m, "sluice_request_duration_seconds") {
		h := mt.GetHistogram()
		route := mt.GetLabel()[0].GetValue()
		want := 0
		for k, v := range classes {
			if strings.HasPrefix(k, route+" ") {
				want += v
			}
		}
		if h.GetSampleCount() != uint64(want) {
			t.Errorf("request_duration{route=%q} count %d, want %d", route, h.GetSampleCount(), want)
		}
		// In seconds: the 1 s timeout on route / and a little more.
		if route == "/" && (h.GetSampleSum() < 1 || h.GetSampleSum() > 15) {
			t.Errorf("request_duration{route=\"/\"} sum %v s, want 1 s and a little more", h.GetSampleSum())
		}
	}
}
