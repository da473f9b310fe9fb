package balancer

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Two answers observed at once, long after a spike that has decayed to
// nothing, must not bring the spike back: each observer decays the stored
// estimate by the time since the stamp it read, so an observer that read
// the other's fresh stamp but the spike's value (the two were two words
// updated one after the other) stored the spike undecayed, and the backend
// lost every draw for minutes.
func TestEWMAConcurrentSamplesKeepDecay(t *testing.T) {
	const (
		window = int64(10 * time.Second)
		spike  = int64(30 * time.Second) // a failed attempt's penalty
		answer = int64(time.Millisecond)
		trials = 20000
	)
	if runtime.GOMAXPROCS(0) < 2 {
		t.Log("one processor: the observers run one after the other")
	}
	t0 := int64(1e12)
	later := t0 + 100*window // e^-100 of the spike: nothing
	var wg sync.WaitGroup
	for i := 0; i < trials; i++ {
		b := NewBackend("p", "a:1")
		b.ObserveLatency(t0, spike, window)
		var start atomic.Bool
		wg.Add(2)
		for g := 0; g < 2; g++ {
			go func() {
				defer wg.Done()
				for !start.Load() {
				}
				b.ObserveLatency(later, answer, window)
			}()
		}
		start.Store(true)
		wg.Wait()
		if got := b.DecayedEWMA(later, window); got > float64(2*answer) {
			t.Fatalf("trial %d: estimate after two concurrent 1 ms answers = %.0f ms, want 1 ms (the 30 s spike decayed 100 windows ago)", i, got/1e6)
		}
	}
}
