package proxy

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// TestMetricsStressSums: concurrent clients, a backend that
// refuses, one with a short keep-alive timeout and one that is slow; the
// access log and the metrics agree in sum.
func TestMetricsStressSums(t *testing.T) {
	shortSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("s", 100))
	}))
	shortSrv.Config.IdleTimeout = 30 * time.Millisecond
	shortSrv.Start()
	t.Cleanup(shortSrv.Close)
	short := struct{ addr func() string }{func() string { return shortSrv.Listener.Addr().String() }}
	slow := startBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(503)
	})
	dead := freeAddr(t)
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { match: { path_prefix: /a/ }, pool: p }
  - { pool: q }
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }, { address: %s }] }
  q: { algorithm: least_conn, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 3 }
`, short.addr(), slow.addr(), dead, short.addr(), dead), m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	const workers, per = 8, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	classes := map[int]int{}
	var bodyIn, bodyOut int
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := range per {
				u := "http://" + px.addr + "/a/x"
				if (w+i)%2 == 0 {
					u = "http://" + px.addr + "/b"
				}
				body := strings.Repeat("x", rand.IntN(50))
				req, _ := http.NewRequest("PUT", u, strings.NewReader(body))
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				classes[resp.StatusCode/100]++
				bodyIn += len(body)
				bodyOut += int(n)
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	px.proxy.SetAccessLog(nil)
	al.Close()
	lines := accessLogLines(t, path)
	if len(lines) != workers*per {
		t.Fatalf("%d lines, want %d", len(lines), workers*per)
	}
	retries := 0.0
	for _, l := range lines {
		retries += l["attempts"].(float64) - 1
	}
	if v := reviewSum(gatherCounts(t, m, "sluice_retries_total")); v != retries {
		t.Errorf("retries_total %v, log %v", v, retries)
	}
	rows := gatherCounts(t, m, "sluice_requests_total")
	for class, n := range classes {
		if v := reviewSum(rows, fmt.Sprintf(`code="%dxx"`, class)); v != float64(n) {
			t.Errorf("%dxx: metric %v, clients saw %d", class, v, n)
		}
	}
	if v := reviewScalar(t, m, "sluice_request_bytes_total"); v != float64(bodyIn) {
		t.Errorf("request bytes %v, sent %d", v, bodyIn)
	}
	if v := reviewScalar(t, m, "sluice_response_bytes_total"); v != float64(bodyOut) {
		t.Errorf("response bytes %v, received %d", v, bodyOut)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("in flight %v", v)
	}
	// Durations: the histograms' sums against the log's, line by line
	// (the log rounds to the microsecond).
	var logUp, logDur float64
	for _, l := range lines {
		if l["upstream_error"] == "" && l["upstream_addr"] != "" {
			logUp += l["upstream_duration"].(float64)
		}
		logDur += l["duration"].(float64)
	}
	var histUp, histDur float64
	var nUp uint64
	for _, mt := range reviewFamily(t, m, "sluice_upstream_duration_seconds") {
		histUp += mt.GetHistogram().GetSampleSum()
		nUp += mt.GetHistogram().GetSampleCount()
	}
	for _, mt := range reviewFamily(t, m, "sluice_request_duration_seconds") {
		histDur += mt.GetHistogram().GetSampleSum()
	}
	tol := float64(len(lines)) * 1e-6
	if d := histUp - logUp; d > tol || d < -tol {
		t.Errorf("upstream duration sum: histogram %.6f, log %.6f (%d samples)", histUp, logUp, nUp)
	}
	if d := histDur - logDur; d > tol || d < -tol {
		t.Errorf("request duration sum: histogram %.6f, log %.6f", histDur, logDur)
	}
	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	t.Logf("classes %v retries %v errors idle %v connect %v reset %v", classes, retries,
		reviewSum(errs, `kind="idle"`), reviewSum(errs, `kind="connect"`), reviewSum(errs, `kind="reset"`))
}
