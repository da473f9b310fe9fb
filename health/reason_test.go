package health

import (
	"net/http"
	"testing"
)

// TestCheckerReportsNewFailureReason: while a backend stays unhealthy, a
// probe that fails for another reason than the last is reported (for
// the admin API's health_reason), one that fails for the same is not,
// and neither is logged as a transition.
func TestCheckerReportsNewFailureReason(t *testing.T) {
	t.Parallel()
	b := newTestBackend(t, nil)
	rec := newRecorder()
	c := newTestChecker(t, rec.options())
	check := httpCheck()
	check.UnhealthyThreshold = 1
	b.status.Store(http.StatusInternalServerError)
	c.Update([]Target{{Pool: "p", Addr: b.addr(), Check: check}})
	if e := rec.next(t); e.Healthy || e.Reason != "status 500" {
		t.Fatalf("event = %+v, want unhealthy with status 500", e)
	}
	n := rec.results.Load()
	waitFor(t, "3 more probes", func() bool { return rec.results.Load() >= n+3 })
	rec.quiet(t, 0) // the same reason again: nothing new

	b.status.Store(http.StatusServiceUnavailable)
	if e := rec.next(t); e.Healthy || e.Reason != "status 503" {
		t.Fatalf("event = %+v, want unhealthy with status 503", e)
	}
	n = rec.results.Load()
	waitFor(t, "3 more probes", func() bool { return rec.results.Load() >= n+3 })
	rec.quiet(t, 0)

	b.status.Store(http.StatusOK)
	if e := rec.next(t); !e.Healthy {
		t.Fatalf("event = %+v, want healthy", e)
	}
}
