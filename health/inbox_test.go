package health

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestInboxCoalesces(t *testing.T) {
	in := NewInbox()
	select {
	case <-in.Ready():
		t.Fatal("Ready() fired on an empty Inbox")
	default:
	}
	in.Put(Event{Pool: "p", Addr: "a", Healthy: false, Reason: "status 503", Source: SourceActive})
	in.Put(Event{Pool: "p", Addr: "b", Healthy: false, Reason: "timeout", Source: SourceActive})
	in.Put(Event{Pool: "p", Addr: "a", Healthy: true, Reason: "status 200", Source: SourceActive})
	in.Put(Event{Pool: "p", Addr: "a", Healthy: false, Reason: "5 failures", Source: SourcePassive})
	in.Put(Event{Pool: "q", Addr: "a", Healthy: false, Reason: "timeout", Source: SourceActive})
	select {
	case <-in.Ready():
	default:
		t.Fatal("Ready() did not fire after Put")
	}
	got := in.Take(nil)
	want := []Event{
		{Pool: "p", Addr: "a", Healthy: true, Reason: "status 200", Source: SourceActive},
		{Pool: "p", Addr: "b", Healthy: false, Reason: "timeout", Source: SourceActive},
		{Pool: "p", Addr: "a", Healthy: false, Reason: "5 failures", Source: SourcePassive},
		{Pool: "q", Addr: "a", Healthy: false, Reason: "timeout", Source: SourceActive},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Take() = %v, want %v", got, want)
	}
	if got := in.Take(nil); len(got) != 0 {
		t.Fatalf("second Take() = %v, want none", got)
	}
	in.Put(Event{Pool: "p", Addr: "a", Healthy: false, Source: SourceActive})
	if got := in.Take(nil); len(got) != 1 || got[0].Healthy {
		t.Fatalf("Take() after a new Put = %v, want the new event only", got)
	}
}

// Many senders, one consumer: the consumer ends up with the last state of
// every backend, and no sender ever blocks.
func TestInboxConcurrent(t *testing.T) {
	const senders, each = 8, 500
	in := NewInbox()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			addr := fmt.Sprintf("10.0.0.%d:80", s)
			for i := range each {
				in.Put(Event{Pool: "p", Addr: addr, Healthy: i == each-1, Source: SourceActive})
			}
		})
	}
	last := map[string]bool{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var buf []Event
	for finished := false; !finished; {
		select {
		case <-in.Ready():
		case <-done:
			finished = true
		}
		buf = in.Take(buf[:0])
		for _, e := range buf {
			last[e.Addr] = e.Healthy
		}
	}
	if len(last) != senders {
		t.Fatalf("saw %d backends, want %d", len(last), senders)
	}
	for addr, healthy := range last {
		if !healthy {
			t.Errorf("last state of %s = unhealthy, want healthy", addr)
		}
	}
}
