package proxy

import (
	"fmt"
	"path/filepath"
	"testing"

	"sluice/accesslog"
	"sluice/config"
	"sluice/metrics"
)

// TestMetricsBadResponseNotObserved: three backends whose answers
// sluice refuses with 502 (a 101 unasked, a field name that is not a
// token, a status outside 100-599). Each is one failed attempt in the
// access log (upstream_error "bad_response"), the process log and
// sluice_upstream_errors_total{kind="other"}; a failed attempt has no
// sample in sluice_upstream_duration_seconds (a timeout, a reset, a
// refused connect and the status 999 have none).
//
// Before the fix (found by review): the 101 and the invalid field name are each observed in
// sluice_upstream_duration_seconds (count 1, want 0), as if the exchange
// had succeeded, while the status 999 is not: the same failure, counted
// two ways. (TestBadResponseCountedAsUpstreamError's comment lists this
// half of the bug as found, but only the error counter was fixed.) Cause:
// Proxy.forward calls up.series.ObserveUpstream when client.do returned
// no error, before badResponse refuses the answer. Fix: observe the
// upstream duration only once the answer is accepted (after the
// badResponse check), or skip it when badResponse refuses it.
func TestMetricsBadResponseNotObserved(t *testing.T) {
	upgrade := startRawBackend(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
	badName := startRawBackend(t, "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok")
	badStatus := startRawBackend(t, "HTTP/1.1 999 Nope\r\nContent-Length: 2\r\n\r\nok")
	m := metrics.New("test")
	px := startProxyWith(t, fmt.Sprintf(`retries: { attempts: 1 }
routes:
  - { match: { path_prefix: /upgrade/ }, pool: upgrade }
  - { match: { path_prefix: /badname/ }, pool: badname }
  - { match: { path_prefix: /badstatus/ }, pool: badstatus }
pools:
  upgrade: { backends: [{ address: %s }] }
  badname: { backends: [{ address: %s }] }
  badstatus: { backends: [{ address: %s }] }
`, upgrade.ln.Addr(), badName.ln.Addr(), badStatus.ln.Addr()), m)
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	paths := []string{"/upgrade/", "/badname/", "/badstatus/"}
	for _, p := range paths {
		if code := rawStatus(t, px.addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); code != 502 {
			t.Fatalf("GET %s = %d, want 502", p, code)
		}
	}
	px.proxy.SetAccessLog(nil)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	lines := accessLogLines(t, path)
	for i, b := range []string{upgrade.ln.Addr().String(), badName.ln.Addr().String(), badStatus.ln.Addr().String()} {
		if lines[i]["upstream_error"] != "bad_response" {
			t.Fatalf("%s: access log upstream_error %v, want bad_response", paths[i], lines[i]["upstream_error"])
		}
		if got := reviewUpstreamCount(t, m, b); got != 0 {
			t.Errorf("%s: sluice_upstream_duration_seconds count = %d, want 0: the access log says the attempt failed (bad_response), "+
				"and a failed attempt is not observed (status 999 is not)", paths[i], got)
		}
	}
}
