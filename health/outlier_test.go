package health

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestOutlierRecord(t *testing.T) {
	const F, S = true, false
	tests := []struct {
		name      string
		threshold int
		give      []bool
		want      []int // indexes of give that trip
	}{
		{name: "trips at threshold", threshold: 3, give: []bool{F, F, F}, want: []int{2}},
		{name: "once per streak", threshold: 3, give: []bool{F, F, F, F, F, F, F}, want: []int{2}},
		{name: "success resets", threshold: 3, give: []bool{F, F, S, F, F, S, F, F, F}, want: []int{8}},
		{name: "new streak trips again", threshold: 2, give: []bool{F, F, F, S, F, F}, want: []int{1, 5}},
		{name: "threshold 1", threshold: 1, give: []bool{F, F, S, F}, want: []int{0, 3}},
		{name: "successes only", threshold: 1, give: []bool{S, S, S}},
		{name: "threshold 0 never trips", threshold: 0, give: []bool{F, F, F}},
		{name: "negative threshold never trips", threshold: -1, give: []bool{F, F, F}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOutlier(tt.threshold)
			var got []int
			for i, failed := range tt.give {
				if o.Record(failed) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Record() tripped at %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOutlierReset(t *testing.T) {
	o := NewOutlier(2)
	o.Record(true)
	if !o.Record(true) {
		t.Fatal("Record() = false at threshold, want true")
	}
	if o.Record(true) {
		t.Fatal("Record() = true after trip, want false")
	}
	o.Reset()
	if got := o.Streak(); got != 0 {
		t.Fatalf("Streak() after Reset = %d, want 0", got)
	}
	o.Record(true)
	if !o.Record(true) {
		t.Error("Record() = false at threshold after Reset, want true")
	}
}

func TestOutlierZeroValue(t *testing.T) {
	var o Outlier
	for range 10 {
		if o.Record(true) {
			t.Fatal("zero Outlier tripped")
		}
	}
}

// Many goroutines failing at once trip the Outlier exactly once per streak.
func TestOutlierConcurrent(t *testing.T) {
	const goroutines, each = 8, 1000
	o := NewOutlier(100)
	for round := range 3 {
		var trips atomic.Int64
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					if o.Record(true) {
						trips.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := trips.Load(); got != 1 {
			t.Fatalf("round %d: %d trips, want 1", round, got)
		}
		if got := o.Streak(); got != goroutines*each {
			t.Fatalf("round %d: Streak() = %d, want %d", round, got, goroutines*each)
		}
		o.Reset()
	}
}

// Mixed results from many goroutines: for the race detector, and a success
// always ends the streak.
func TestOutlierConcurrentMixed(t *testing.T) {
	o := NewOutlier(5)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				o.Record((i+g)%7 != 0)
			}
		})
	}
	wg.Wait()
	o.Record(false)
	if got := o.Streak(); got != 0 {
		t.Errorf("Streak() after success = %d, want 0", got)
	}
}

func BenchmarkOutlierRecord(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every int // one failure every so many requests; 0: none
	}{
		{name: "success", every: 0},
		{name: "fail=1pct", every: 100},
		{name: "fail=all", every: 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := NewOutlier(5)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					o.Record(bc.every > 0 && i%bc.every == 0)
				}
			})
		})
	}
}
