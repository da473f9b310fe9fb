package health

import (
	"strings"
	"testing"
	"time"
)

// TestProbeLongStatusLine: a status line longer than the probe's 1 KiB
// buffer (a long reason phrase), final or interim, passes the probe: the
// data plane takes such an answer within its 16 KiB head, as HAProxy's and
// Envoy's checks do. (Found by review: "bad response: status line too
// long" failed a working backend at its first probe.)
func TestProbeLongStatusLine(t *testing.T) {
	reason := strings.Repeat("r", 1100)
	for _, tt := range []struct{ name, answer string }{
		{"final", "HTTP/1.1 200 " + reason + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"interim", "HTTP/1.1 103 " + reason + "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawBackend(t, tt.answer)
			r := newRecorder()
			c := newTestChecker(t, r.options())
			c.Update([]Target{{Pool: "p", Addr: addr, Check: httpCheck()}})
			waitFor(t, "3 probes", func() bool { return r.results.Load() >= 3 })
			select {
			case rec := <-r.events:
				t.Errorf("backend answering 200 with a %d-byte reason phrase got %+v, want it to stay healthy", len(reason), rec.e)
			case <-time.After(20 * time.Millisecond):
			}
			if ok, all := r.oks.Load(), r.results.Load(); ok != all {
				t.Errorf("%d of %d probes succeeded, want all", ok, all)
			}
		})
	}
}

// TestProbeHeadCutOffIsFailure: a backend that closes in the middle of
// its answer's head fails the probe, as the data plane answers the same
// bytes with 502 and HAProxy's and Envoy's checks fail them. (Found by
// review: the probe stopped reading after the status line and passed.)
func TestProbeHeadCutOffIsFailure(t *testing.T) {
	addr := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Le")
	r := newRecorder()
	c := newTestChecker(t, r.options())
	hc := httpCheck()
	c.Update([]Target{{Pool: "p", Addr: addr, Check: hc}})
	select {
	case rec := <-r.events:
		if rec.e.Healthy {
			t.Fatalf("event %+v, want unhealthy", rec.e)
		}
	case <-time.After(time.Second):
		t.Errorf("a backend that closes in the middle of its response head passed %d of %d probes; want it unhealthy at its first probe",
			r.oks.Load(), r.results.Load())
	}
}
