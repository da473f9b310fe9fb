package netconn

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countedLoan counts its GiveBack calls.
type countedLoan struct{ given atomic.Int32 }

func (l *countedLoan) GiveBack() { l.given.Add(1) }

// TestLendToAnswer: what an answer is lent is kept while the answer is
// written and given back once, at the first point the server has passed
// the answer on: the next turn's read, the awaited write before its wait,
// or the next loan.
func TestLendToAnswer(t *testing.T) {
	tests := []struct {
		name string
		// answer writes the answer lent l, and whatever comes next, and
		// returns the number of GiveBack calls seen before the point where
		// it should have been given back.
		answer func(t *testing.T, srv *Conn, client net.Conn, l *countedLoan) int32
	}{
		{
			name: "next turn's read",
			answer: func(t *testing.T, srv *Conn, client net.Conn, l *countedLoan) int32 {
				srv.LendToAnswer(l)
				if _, err := srv.Write([]byte("HEAD")); err != nil {
					t.Fatal(err)
				}
				if _, err := srv.Write([]byte("BODY")); err != nil {
					t.Fatal(err)
				}
				before := l.given.Load()
				if _, err := client.Write([]byte("NEXT")); err != nil {
					t.Fatal(err)
				}
				if n, err := srv.Read(make([]byte, 64)); n != 4 || err != nil {
					t.Fatalf("Read() = %d, %v", n, err)
				}
				return before
			},
		},
		{
			name: "awaited write, before the wait",
			answer: func(t *testing.T, srv *Conn, client net.Conn, l *countedLoan) int32 {
				srv.LendToAnswer(l)
				srv.AwaitNextRequest(true)
				done := writeAsync(srv, []byte("ANSWER"))
				stillWaiting(t, done)
				// Given back while the write still waits for the next
				// request: an idle connection keeps no loan.
				deadline := time.Now().Add(5 * time.Second)
				for l.given.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if got := l.given.Load(); got != 1 {
					t.Fatalf("given back %d time(s) while the awaited write waits, want 1", got)
				}
				if _, err := client.Write([]byte("NEXT")); err != nil {
					t.Fatal(err)
				}
				returned(t, done, len("ANSWER"))
				if n, err := srv.Read(make([]byte, 64)); n != 4 || err != nil {
					t.Fatalf("Read() = %d, %v", n, err)
				}
				return 0
			},
		},
		{
			name: "next loan (a pipelined answer)",
			answer: func(t *testing.T, srv *Conn, _ net.Conn, l *countedLoan) int32 {
				srv.LendToAnswer(l)
				before := l.given.Load()
				srv.LendToAnswer(&countedLoan{})
				return before
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, client := awaitPair(t, time.Minute)
			request(t, srv, client)
			l := &countedLoan{}
			if before := tt.answer(t, srv, client, l); before != 0 {
				t.Fatalf("given back %d time(s) before the answer was passed on", before)
			}
			if got := l.given.Load(); got != 1 {
				t.Fatalf("given back %d time(s), want 1", got)
			}
			// Nothing gives it back again: the next turn has no loan.
			if _, err := client.Write([]byte("MORE")); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Write([]byte("A")); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Read(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			if got := l.given.Load(); got != 1 {
				t.Fatalf("given back %d time(s) in all, want 1", got)
			}
		})
	}
}
