//go:build !race

package health

import (
	"testing"
	"time"
)

func TestOutlierRecordAllocs(t *testing.T) {
	o := NewOutlier(3)
	i := 0
	got := testing.AllocsPerRun(1000, func() {
		i++
		o.Record(i%4 != 0)
	})
	if got != 0 {
		t.Errorf("Record() allocs = %v, want 0", got)
	}
}

func TestSlowStartWeightAllocs(t *testing.T) {
	t0 := time.Now()
	var sink uint32
	got := testing.AllocsPerRun(1000, func() {
		w, _ := SlowStartWeight(100, t0, t0.Add(time.Second), 10*time.Second)
		if Panic(3, 10, 50) {
			sink += w
		}
	})
	_ = sink
	if got != 0 {
		t.Errorf("SlowStartWeight() and Panic() allocs = %v, want 0", got)
	}
}
