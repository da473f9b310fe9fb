package config

import "testing"

// TestCmpShareExactAtDecimalPercent: a share exactly at a decimal
// percentage compares equal, where float64 arithmetic put 33 of 375
// below 8.8% (8.8 × 375 = 3300.0000000000005).
func TestCmpShareExactAtDecimalPercent(t *testing.T) {
	tests := []struct {
		p           Percent
		part, whole int
		want        int
	}{
		{8.8, 33, 375, 0},
		{2.2, 33, 1500, 0},
		{4.4, 66, 1500, 0},
		{50, 1, 2, 0},
		{50, 0, 2, -1},
		{50, 2, 2, 1},
		{33.333333, 1, 3, 1},
		{0, 0, 10, 0},
		{100, 10, 10, 0},
		{100, 9, 10, -1},
		{8.8, 32, 375, -1},
		{8.8, 34, 375, 1},
	}
	for _, tt := range tests {
		if got := tt.p.CmpShare(tt.part, tt.whole); got != tt.want {
			t.Errorf("Percent(%v).CmpShare(%d, %d) = %d, want %d", tt.p, tt.part, tt.whole, got, tt.want)
		}
	}
	// Every one-decimal percentage against pools up to 2000: a share
	// that equals it in exact arithmetic compares equal.
	for tenths := 1; tenths <= 1000; tenths++ {
		p := Percent(float64(tenths) / 10)
		for whole := 1; whole <= 2000; whole++ {
			// part/whole == tenths/1000 exactly when part*1000 == tenths*whole.
			if tenths*whole%1000 != 0 {
				continue
			}
			part := tenths * whole / 1000
			if got := p.CmpShare(part, whole); got != 0 {
				t.Fatalf("Percent(%v).CmpShare(%d, %d) = %d, want 0", p, part, whole, got)
			}
		}
	}
}
