package main

import (
	"slices"
	"testing"
	"time"
)

// TestRestartQueue: each dead worker is restarted a second after its own
// death, whatever dies after it. Found by review. What was wrong: the
// supervisor reset its one restart timer to a second at every worker
// death, so a second death 0.9 s after the first put the first worker's
// restart off to 1.9 s, with no worker serving the port meanwhile
// (README, Workers: "a worker that dies later is restarted every
// second").
func TestRestartQueue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var q restartQueue
	if _, ok := q.next(); ok {
		t.Fatal("an empty queue has a next restart")
	}
	q.add(0, at(1000)) // worker 0 died at 0
	q.add(1, at(1900)) // worker 1 died at 0.9 s
	steps := []struct {
		now      int
		due      []int
		next     int // ms; -1: none waits
		addAgain []int
	}{
		{now: 999, due: nil, next: 1000},
		{now: 1000, due: []int{0}, next: 1900},
		{now: 1500, due: nil, next: 1900},
		// Worker 1's restart fails: again a second later.
		{now: 1900, due: []int{1}, next: 2900, addAgain: []int{1}},
		{now: 2900, due: []int{1}, next: -1},
	}
	for _, s := range steps {
		due := q.take(at(s.now))
		if !slices.Equal(due, s.due) {
			t.Errorf("at %d ms: due %v, want %v", s.now, due, s.due)
		}
		for _, w := range s.addAgain {
			q.add(w, at(s.now+1000))
		}
		next, ok := q.next()
		switch {
		case s.next < 0 && ok:
			t.Errorf("at %d ms: next restart at %v, want none", s.now, next.Sub(t0))
		case s.next >= 0 && (!ok || !next.Equal(at(s.next))):
			t.Errorf("at %d ms: next restart at %v (%v), want %d ms", s.now, next.Sub(t0), ok, s.next)
		}
	}
}
