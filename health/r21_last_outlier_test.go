package health

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLastOutlierModel checks Outlier against its doc comments over
// random sequences of failures, successes, Resets and threshold changes
// (<= 0 included): a failure counts only while tripping is on, trips when
// the streak is at or past the threshold and has not tripped, never a
// second time until a success or Reset; a success and Reset start anew.
func TestOutlierModel(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 1))
	for round := range 2000 {
		th := r.IntN(8) - 1
		o := NewOutlier(th)
		var n int64
		tripped := false
		for step := range 60 {
			switch op := r.IntN(10); {
			case op < 6:
				want := false
				if th > 0 {
					n++
					want = !tripped && n >= int64(th)
					tripped = tripped || want
				}
				if got := o.Record(true); got != want {
					t.Fatalf("round %d step %d: Record(true) = %v, want %v (threshold %d, streak %d)", round, step, got, want, th, n)
				}
			case op < 7:
				o.Record(false)
				n, tripped = 0, false
			case op < 8:
				o.Reset()
				n, tripped = 0, false
			default:
				th = r.IntN(8) - 1
				o.SetThreshold(th)
			}
			if got := o.Streak(); got != n {
				t.Fatalf("round %d step %d: Streak() = %d, want %d", round, step, got, n)
			}
		}
	}
}

// TestLastOutlierConcurrentOneTrip: four goroutines record failures
// of one streak while another moves the threshold between 1 and 8; the
// streak (48 failures, all counted) trips exactly once.
func TestOutlierConcurrentOneTrip(t *testing.T) {
	for round := range 300 {
		o := NewOutlier(1 + round%8)
		var trips atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		moved := make(chan struct{})
		go func() {
			defer close(moved)
			r := rand.New(rand.NewPCG(uint64(round), 2))
			for {
				select {
				case <-stop:
					return
				default:
					o.SetThreshold(1 + r.IntN(8))
				}
			}
		}()
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 12 {
					if o.Record(true) {
						trips.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		<-moved
		if got := trips.Load(); got != 1 {
			t.Fatalf("round %d: one streak of 48 failures tripped %d times, want 1", round, got)
		}
		if got := o.Streak(); got != 48 {
			t.Fatalf("round %d: Streak() = %d, want 48", round, got)
		}
	}
}
