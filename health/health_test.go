package health

import (
	"testing"
	"time"

	"sluice/config"
)

func TestSlowStartWeight(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const window = 10 * time.Second
	tests := []struct {
		name        string
		weight      uint32
		elapsed     time.Duration
		window      time.Duration
		want        uint32
		wantRamping bool
	}{
		{name: "start is the floor", weight: 100, elapsed: 0, window: window, want: 10, wantRamping: true},
		{name: "halfway", weight: 100, elapsed: 5 * time.Second, window: window, want: 55, wantRamping: true},
		{name: "almost done", weight: 100, elapsed: window - time.Nanosecond, window: window, want: 99, wantRamping: true},
		{name: "done", weight: 100, elapsed: window, window: window, want: 100},
		{name: "long done", weight: 100, elapsed: time.Hour, window: window, want: 100},
		{name: "since in the future", weight: 100, elapsed: -time.Second, window: window, want: 10, wantRamping: true},
		{name: "small weight floor is 1", weight: 5, elapsed: 0, window: window, want: 1, wantRamping: true},
		{name: "small weight halfway", weight: 5, elapsed: 5 * time.Second, window: window, want: 3, wantRamping: true},
		{name: "weight 1 cannot ramp", weight: 1, elapsed: 0, window: window, want: 1},
		{name: "weight 0", weight: 0, elapsed: 0, window: window, want: 0},
		{name: "no window", weight: 100, elapsed: 0, window: 0, want: 100},
		{name: "negative window", weight: 100, elapsed: 0, window: -time.Second, want: 100},
		{name: "huge weight no overflow", weight: 4_000_000_000, elapsed: 5 * time.Second, window: window, want: 2_200_000_000, wantRamping: true},
		{name: "huge window", weight: 100, elapsed: 24 * time.Hour, window: 48 * time.Hour, want: 55, wantRamping: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ramping := SlowStartWeight(tt.weight, t0, t0.Add(tt.elapsed), tt.window)
			if got != tt.want || ramping != tt.wantRamping {
				t.Errorf("SlowStartWeight(%d, +%v, %v) = %d, %v, want %d, %v",
					tt.weight, tt.elapsed, tt.window, got, ramping, tt.want, tt.wantRamping)
			}
		})
	}
}

func TestSlowStartWeightMonotonic(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const window = time.Second
	prev := uint32(0)
	for e := time.Duration(0); e <= window+time.Millisecond; e += time.Millisecond {
		w, _ := SlowStartWeight(37, t0, t0.Add(e), window)
		if w < prev || w < 3 || w > 37 {
			t.Fatalf("SlowStartWeight(37, +%v) = %d after %d", e, w, prev)
		}
		prev = w
	}
	if prev != 37 {
		t.Errorf("final weight = %d, want 37", prev)
	}
}

func TestPanic(t *testing.T) {
	tests := []struct {
		name           string
		healthy, total int
		threshold      config.Percent
		want           bool
	}{
		{name: "off", healthy: 0, total: 10, threshold: 0, want: false},
		{name: "all healthy", healthy: 10, total: 10, threshold: 50, want: false},
		{name: "exactly at threshold", healthy: 5, total: 10, threshold: 50, want: false},
		{name: "below threshold", healthy: 4, total: 10, threshold: 50, want: true},
		{name: "none healthy", healthy: 0, total: 3, threshold: 1, want: true},
		{name: "fractional threshold", healthy: 1, total: 3, threshold: 33.4, want: true},
		{name: "fractional threshold met", healthy: 1, total: 3, threshold: 33.3, want: false},
		{name: "empty pool", healthy: 0, total: 0, threshold: 50, want: false},
		{name: "100 percent", healthy: 9, total: 10, threshold: 100, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Panic(tt.healthy, tt.total, tt.threshold); got != tt.want {
				t.Errorf("Panic(%d, %d, %v) = %v, want %v", tt.healthy, tt.total, tt.threshold, got, tt.want)
			}
		})
	}
}
