//go:build !race

package balancer

import (
	"fmt"
	"testing"
	"time"
)

// Pick is on every request: it must never allocate.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, algorithm := range algorithms {
		for _, n := range []int{2, 16, 128, 1024} {
			t.Run(fmt.Sprintf("%s/n=%d", algorithm, n), func(t *testing.T) {
				targets := loadedTargets(n)
				p := mustBuild(t, algorithm, targets, Options{})
				rnd := &fakeRand{}
				now := time.Now().UnixNano()
				if got := testing.AllocsPerRun(1000, func() { p.Pick(rnd.next(), now) }); got != 0 {
					t.Errorf("AllocsPerRun(Pick) = %v, want 0", got)
				}
			})
		}
	}
}

func TestHashKeyDoesNotAllocate(t *testing.T) {
	key := []byte("session=0f3c9a2e7b1d4c58a9e6")
	s := string(key)
	if got := testing.AllocsPerRun(1000, func() { HashKey(key) }); got != 0 {
		t.Errorf("AllocsPerRun(HashKey) = %v, want 0", got)
	}
	if got := testing.AllocsPerRun(1000, func() { HashString(s) }); got != 0 {
		t.Errorf("AllocsPerRun(HashString) = %v, want 0", got)
	}
}
