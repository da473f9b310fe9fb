package accesslog

import (
	"io"
	"testing"
	"time"
)

// warm fills the logger's free list, as a running proxy would after its
// first few thousand requests, and with wait, waits until the writer is
// idle.
func warm(tb testing.TB, l *Logger, wait bool) {
	tb.Helper()
	es := make([]*Entry, queueSize+512)
	for i := range es {
		es[i] = l.Acquire()
		fill(es[i], "/warm/up/a/path/of/a/typical/length?with=query")
	}
	for _, e := range es {
		l.Submit(e)
	}
	if !wait {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(l.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkSubmit is the request path's cost of one logged request, from
// every core at once, with a writer that keeps up (io.Discard).
func BenchmarkSubmit(b *testing.B) {
	l, err := New(enabled(1), io.Discard, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	warm(b, l, true)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := l.Acquire()
			fill(e, "/api/v1/items/42?expand=owner")
			l.Submit(e)
		}
	})
}

// BenchmarkSubmitDropping is the same with the queue always full, the
// case of a stalled disk: it must stay as cheap.
func BenchmarkSubmitDropping(b *testing.B) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	l, err := New(enabled(1), w, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	defer close(w.release)
	warm(b, l, false)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := l.Acquire()
			fill(e, "/api/v1/items/42?expand=owner")
			l.Submit(e)
		}
	})
}

// BenchmarkAppendEntry is the writer's encoding cost per line.
func BenchmarkAppendEntry(b *testing.B) {
	e := &Entry{}
	fill(e, "/api/v1/items/42?expand=owner")
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}
