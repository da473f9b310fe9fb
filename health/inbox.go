package health

import "sync"

// Inbox hands Events from many senders (probe goroutines, the data plane)
// to one consumer (the reconciler) without ever blocking a sender and
// without ever losing the latest state of a backend. Put is meant to be
// used as CheckerOptions.OnChange.
//
// Events for the same (Source, Pool, Addr) not yet taken are coalesced:
// only the latest is kept. The consumer must therefore treat each Event as
// "the backend's state is now Healthy", not as a toggle.
//
// A plain channel is the wrong tool here: the reconciler both reads the
// events and calls Checker.Update, which waits for probe goroutines; a probe
// blocked sending to a full channel would then deadlock it, and dropping
// the event instead would leave a backend in the wrong state for good.
type Inbox struct {
	mu      sync.Mutex
	pending []Event
	index   map[eventKey]int // position in pending
	ready   chan struct{}
}

type eventKey struct{ source, pool, addr string }

// NewInbox returns an empty Inbox.
func NewInbox() *Inbox {
	return &Inbox{index: make(map[eventKey]int), ready: make(chan struct{}, 1)}
}

// Put records e, replacing any untaken Event for the same backend and
// source, and wakes the consumer. It never blocks for long.
func (in *Inbox) Put(e Event) {
	k := eventKey{e.Source, e.Pool, e.Addr}
	in.mu.Lock()
	if i, ok := in.index[k]; ok {
		in.pending[i] = e
	} else {
		in.index[k] = len(in.pending)
		in.pending = append(in.pending, e)
	}
	in.mu.Unlock()
	select {
	case in.ready <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Ready receives a value after one or more Puts; the consumer then calls
// Take. A wake-up may find nothing to take (an earlier Take got it).
func (in *Inbox) Ready() <-chan struct{} { return in.ready }

// Take appends the pending Events to dst, oldest backend first, and empties
// the Inbox.
func (in *Inbox) Take(dst []Event) []Event {
	in.mu.Lock()
	dst = append(dst, in.pending...)
	clear(in.pending)
	in.pending = in.pending[:0]
	clear(in.index)
	in.mu.Unlock()
	return dst
}
