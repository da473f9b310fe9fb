package health

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"sluice/config"
)

// TestProbeRedirectNotFollowed: a 301 from the check path is the
// probe's answer, never followed (as HAProxy and Envoy do): healthy under
// the default 200-399, unhealthy under expect_status [200], and in both
// cases the backend sees only GETs of the check path. Passes.
func TestProbeRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		expect      []config.StatusRange
		wantHealthy bool
	}{
		{"default 200-399", nil, true},
		{"expect 200", []config.StatusRange{{Lo: 200, Hi: 200}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var paths []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				if r.URL.Path == "/healthz" {
					http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
				}
			}))
			t.Cleanup(srv.Close)
			rec := newRecorder()
			c := newTestChecker(t, rec.options())
			hc := httpCheck()
			hc.ExpectStatus = tt.expect
			hc.UnhealthyThreshold = 1
			c.Update([]Target{{Pool: "p", Addr: srv.Listener.Addr().String(), Check: hc}})
			waitFor(t, "3 probes", func() bool { return rec.results.Load() >= 3 })
			if tt.wantHealthy {
				rec.quiet(t, 50*time.Millisecond)
			} else if e := rec.next(t); e.Healthy || e.Reason != "status 301" {
				t.Errorf("event %+v, want unhealthy with reason status 301", e)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range paths {
				if p != "/healthz" {
					t.Fatalf("backend saw a request for %q: the probe followed a redirect", p)
				}
			}
		})
	}
}
