package proxy

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestFailureLogSecondsOutOfOrder: failureLog.allow takes the
// caller's clock reading (a request's start for no-backend, an exchange's
// end for a failed attempt), read before the call on another goroutine,
// so readings reach it slightly out of order around a second boundary. A
// reading from the second before moves f.second back and zeroes the
// count, and the next reading from the current second moves it forward
// and zeroes it again: each straggler hands out a fresh budget of
// failuresPerSecond lines within the same second.
func TestFailureLogSecondsOutOfOrder(t *testing.T) {
	f := newFailureLog(zerolog.Nop())
	t11 := time.Unix(1_800_000_011, 0)
	late := t11.Add(-time.Millisecond) // second 10, reaching allow after second 11 began
	logged := 0
	for round := 0; round < 3; round++ {
		for range failuresPerSecond + 5 {
			if ok, _ := f.allow(t11); ok {
				logged++
			}
		}
		if ok, _ := f.allow(late); ok {
			logged++
		}
	}
	// Found by review, fixed: expected at most failuresPerSecond lines for second 11 (plus,
	// at most, the stragglers themselves); it was 3×failuresPerSecond+3:
	// every straggler reset the count twice.
	if logged > failuresPerSecond+3 {
		t.Errorf("%d lines logged within one second (three stragglers from the second before among them); want at most %d", logged, failuresPerSecond+3)
	}
}
