//go:build !race

package netconn

import "testing"

// The head watch's HEAD note allocates nothing (the request path's zero
// allocations).
func TestHeadWatchNoAllocs(t *testing.T) {
	lines := [][]byte{
		[]byte("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("HEAD /partial"),
	}
	var w headWatch
	n := testing.AllocsPerRun(200, func() {
		for _, b := range lines {
			w.start()
			w.scan(b)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
	w.start()
	w.scan(lines[0])
	if !w.headMethod {
		t.Error("HEAD line not noted")
	}
	w.start()
	w.scan(lines[1])
	if w.headMethod {
		t.Error("GET line noted as HEAD")
	}
}
