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

// TestMetConnLimitAndTooLarge: the failures that say nothing
// about the backend are counted as README says: a request that finds
// every connection busy (max_conns_per_backend) is retried (a pool of one
// retries its one backend), each attempt one kind="other" error and the
// retry one sluice_retries_total, the client gets 503 under the backend's
// row; an answer over max_response_bytes is one kind="other" error and a
// 502; neither is an upstream duration sample.
func TestMetConnLimitAndTooLarge(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold":
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			io.WriteString(w, "held")
		case "/big":
			io.WriteString(w, strings.Repeat("x", 5000))
		default:
			io.WriteString(w, "ok")
		}
	})
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`routes:
  - { pool: p }
pools:
  p: { backends: [{ address: %s }] }
limits: { max_conns_per_backend: 1, max_response_bytes: 1000 }
retries: { attempts: 2 }
`, b.addr()), m)
	c := testClient(t)
	var wg sync.WaitGroup
	wg.Add(1)
	var heldCode int
	go func() {
		defer wg.Done()
		heldCode, _, _ = get(t, c, "http://"+px.addr+"/hold", nil)
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the held request never reached the backend")
	}
	if code, _, _ := get(t, c, "http://"+px.addr+"/x", nil); code != 503 {
		t.Errorf("request with the one connection busy: %d, want 503", code)
	}
	close(release)
	wg.Wait()
	if heldCode != 200 {
		t.Errorf("held request: %d, want 200", heldCode)
	}
	if code, _, _ := get(t, c, "http://"+px.addr+"/big", nil); code != 502 {
		t.Errorf("answer over max_response_bytes: %d, want 502", code)
	}

	errs := gatherCounts(t, m, "sluice_upstream_errors_total")
	want := map[string]float64{"other": 3, "connect": 0, "timeout": 0, "reset": 0, "idle": 0}
	for kind, n := range want {
		if v := reviewSum(errs, `kind="`+kind+`"`); v != n {
			t.Errorf("upstream_errors_total{kind=%s} = %v, want %v: %v", kind, v, n, errs)
		}
	}
	if v := reviewSum(gatherCounts(t, m, "sluice_retries_total")); v != 1 {
		t.Errorf("retries_total = %v, want 1", v)
	}
	if v := reviewSum(gatherCounts(t, m, "sluice_no_backend_total")); v != 0 {
		t.Errorf("no_backend_total = %v, want 0 (a busy backend is no missing one)", v)
	}
	req := gatherCounts(t, m, "sluice_requests_total")
	for class, n := range map[string]float64{"2xx": 1, "5xx": 2} {
		if v := reviewSum(req, `backend="`+b.addr()+`"`, `code="`+class+`"`); v != n {
			t.Errorf("requests_total{%s} = %v, want %v: %v", class, v, n, req)
		}
	}
	if got := reviewUpstreamCount(t, m, b.addr()); got != 1 {
		t.Errorf("upstream_duration count = %d, want 1 (the held answer only)", got)
	}
	if v := reviewScalar(t, m, "sluice_requests_in_flight"); v != 0 {
		t.Errorf("requests_in_flight = %v, want 0", v)
	}
}
