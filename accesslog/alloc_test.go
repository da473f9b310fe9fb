//go:build !race

package accesslog

import (
	"io"
	"testing"
)

// TestSubmitAllocs: the request path's share of logging — Acquire, copy
// the fields in, Submit — allocates nothing, and neither does the writer
// (AllocsPerRun counts every goroutine's allocations).
func TestSubmitAllocs(t *testing.T) {
	var c counter
	l, err := New(enabled(1), io.Discard, c.inc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	warm(t, l, true)
	n := testing.AllocsPerRun(2000, func() {
		if !l.Sampled(12345) {
			return
		}
		e := l.Acquire()
		fill(e, "/api/v1/items/42?expand=owner")
		l.Submit(e)
	})
	if n != 0 {
		t.Errorf("Acquire+fill+Submit allocates %v times per request, want 0", n)
	}
}

func TestAppendEntryAllocs(t *testing.T) {
	e := &Entry{}
	fill(e, "/caf\xc3\xa9/\xff\u2028")
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(1000, func() { buf = appendEntry(buf[:0], e) }); n != 0 {
		t.Errorf("appendEntry allocates %v times, want 0", n)
	}
}
