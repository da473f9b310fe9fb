package health

import (
	"math"
	"slices"
	"testing"
	"time"

	"sluice/config"
)

var epoch = time.Unix(1_700_000_000, 0)

func testEjector() *Ejector {
	return NewEjector(config.OutlierDetection{
		ConsecutiveFailures: 5,
		BaseEjectionTime:    time.Second,
		MaxEjectionTime:     5 * time.Second,
		MaxEjectionPercent:  100,
	})
}

// Each ejection right after the previous one ends doubles, up to the cap.
func TestEjectorBackoff(t *testing.T) {
	e := testEjector()
	now := epoch
	want := []time.Duration{1, 2, 4, 5, 5, 5}
	for i, w := range want {
		until, ok := e.Eject("a", now, 10)
		if !ok {
			t.Fatalf("ejection %d: Eject() ok = false, want true", i+1)
		}
		if got := until.Sub(now); got != w*time.Second {
			t.Fatalf("ejection %d: lasts %v, want %v", i+1, got, w*time.Second)
		}
		now = until
		if back := e.Expire(now); !slices.Equal(back, []string{"a"}) {
			t.Fatalf("Expire(%v) = %v, want [a]", now, back)
		}
	}
}

func TestEjectorDuration(t *testing.T) {
	tests := []struct {
		name      string
		base, max time.Duration
		n         int
		want      time.Duration
	}{
		{name: "first", base: time.Second, max: time.Minute, n: 0, want: time.Second},
		{name: "third", base: time.Second, max: time.Minute, n: 2, want: 4 * time.Second},
		{name: "capped", base: time.Second, max: time.Minute, n: 10, want: time.Minute},
		{name: "huge n capped", base: time.Second, max: time.Minute, n: 1 << 30, want: time.Minute},
		{name: "no cap", base: time.Second, max: 0, n: 3, want: 8 * time.Second},
		{name: "no cap no overflow", base: time.Second, max: 0, n: 200, want: math.MaxInt64},
		{name: "max below base", base: time.Minute, max: time.Second, n: 3, want: time.Minute},
		{name: "base unset", base: 0, max: time.Hour, n: 1, want: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEjector(config.OutlierDetection{BaseEjectionTime: tt.base, MaxEjectionTime: tt.max})
			if got := e.duration(tt.n); got != tt.want {
				t.Errorf("duration(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestEjectorMaxPercent(t *testing.T) {
	tests := []struct {
		name     string
		percent  config.Percent
		poolSize int
		already  int // backends ejected before
		want     bool
	}{
		{name: "50% of 2 allows 1", percent: 50, poolSize: 2, already: 0, want: true},
		{name: "50% of 2 refuses 2", percent: 50, poolSize: 2, already: 1, want: false},
		{name: "50% of 3 allows 1", percent: 50, poolSize: 3, already: 0, want: true},
		{name: "50% of 3 refuses 2", percent: 50, poolSize: 3, already: 1, want: false},
		{name: "10% of 5 allows the first", percent: 10, poolSize: 5, already: 0, want: true},
		{name: "10% of 5 refuses a second", percent: 10, poolSize: 5, already: 1, want: false},
		{name: "50% of 1 allows the first", percent: 50, poolSize: 1, already: 0, want: true},
		{name: "10% of 10 allows 1", percent: 10, poolSize: 10, already: 0, want: true},
		{name: "0% refuses", percent: 0, poolSize: 100, already: 0, want: false},
		{name: "100% allows the last", percent: 100, poolSize: 3, already: 2, want: true},
		{name: "100% of 1", percent: 100, poolSize: 1, already: 0, want: true},
		{name: "empty pool", percent: 100, poolSize: 0, already: 0, want: false},
		{name: "fractional", percent: 33.4, poolSize: 3, already: 0, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEjector(config.OutlierDetection{BaseEjectionTime: time.Second, MaxEjectionPercent: 100})
			for i := range tt.already {
				if _, ok := e.Eject(string(rune('a'+i)), epoch, tt.poolSize); !ok {
					t.Fatalf("setup: Eject() ok = false")
				}
			}
			e.cfg.MaxEjectionPercent = tt.percent
			_, ok := e.Eject("z", epoch, tt.poolSize)
			if ok != tt.want {
				t.Errorf("Eject() with %d of %d ejected at %v%% ok = %v, want %v",
					tt.already, tt.poolSize, tt.percent, ok, tt.want)
			}
			if _, ejected := e.Ejected("z"); ejected != tt.want {
				t.Errorf("Ejected() = %v, want %v", ejected, tt.want)
			}
		})
	}
}

// An expired ejection frees its share of the pool.
func TestEjectorMaxPercentAfterExpire(t *testing.T) {
	e := NewEjector(config.OutlierDetection{BaseEjectionTime: time.Second, MaxEjectionPercent: 50})
	if _, ok := e.Eject("a", epoch, 2); !ok {
		t.Fatal("Eject(a) ok = false, want true")
	}
	if _, ok := e.Eject("b", epoch, 2); ok {
		t.Fatal("Eject(b) ok = true with a ejected, want false")
	}
	e.Expire(epoch.Add(time.Second))
	if _, ok := e.Eject("b", epoch.Add(time.Second), 2); !ok {
		t.Error("Eject(b) ok = false after a came back, want true")
	}
}

func TestEjectorAlreadyEjected(t *testing.T) {
	e := testEjector()
	until, _ := e.Eject("a", epoch, 10)
	got, ok := e.Eject("a", epoch.Add(500*time.Millisecond), 10)
	if ok || !got.Equal(until) {
		t.Errorf("second Eject() = %v, %v, want %v, false", got, ok, until)
	}
	if got, _ := e.Ejected("a"); !got.Equal(until) {
		t.Errorf("Ejected() = %v, want %v (not extended)", got, until)
	}
}

func TestEjectorExpire(t *testing.T) {
	e := testEjector()
	if _, ok := e.NextExpiry(); ok {
		t.Fatal("NextExpiry() ok = true with nothing ejected")
	}
	ua, _ := e.Eject("a", epoch, 10)                           // until epoch+1s
	ub, _ := e.Eject("b", epoch.Add(300*time.Millisecond), 10) // until epoch+1.3s
	e.Eject("c", epoch.Add(300*time.Millisecond), 10)
	if next, ok := e.NextExpiry(); !ok || !next.Equal(ua) {
		t.Fatalf("NextExpiry() = %v, %v, want %v, true", next, ok, ua)
	}
	if back := e.Expire(ua.Add(-time.Nanosecond)); back != nil {
		t.Fatalf("Expire(before) = %v, want nil", back)
	}
	if back := e.Expire(ua); !slices.Equal(back, []string{"a"}) {
		t.Fatalf("Expire(%v) = %v, want [a]", ua, back)
	}
	if _, ok := e.Ejected("a"); ok {
		t.Error("Ejected(a) = true after Expire")
	}
	if until, ok := e.Ejected("b"); !ok || !until.Equal(ub) {
		t.Errorf("Ejected(b) = %v, %v, want %v, true", until, ok, ub)
	}
	if next, ok := e.NextExpiry(); !ok || !next.Equal(ub) {
		t.Fatalf("NextExpiry() = %v, %v, want %v, true", next, ok, ub)
	}
	if back := e.Expire(epoch.Add(time.Hour)); !slices.Equal(back, []string{"b", "c"}) {
		t.Fatalf("Expire(late) = %v, want [b c] sorted", back)
	}
	if _, ok := e.NextExpiry(); ok {
		t.Error("NextExpiry() ok = true after everything expired")
	}
}

// An ejection stays in force until Expire ends it.
func TestEjectorEjectedUntilExpire(t *testing.T) {
	e := testEjector()
	e.Eject("a", epoch, 10)
	if _, ok := e.Ejected("a"); !ok {
		t.Fatal("Ejected(a) = false right after Eject")
	}
	if _, ok := e.Eject("a", epoch.Add(time.Hour), 10); ok {
		t.Error("Eject(a) ok = true while still ejected (not expired), want false")
	}
}

// The ejection count drops by one per BaseEjectionTime spent back in the
// pool.
func TestEjectorDecay(t *testing.T) {
	tests := []struct {
		name string
		good time.Duration // time back in the pool before the next ejection
		want time.Duration
	}{
		{name: "at once", good: 0, want: 8 * time.Second},
		{name: "under one base", good: 999 * time.Millisecond, want: 8 * time.Second},
		{name: "one base", good: time.Second, want: 4 * time.Second},
		{name: "two bases", good: 2500 * time.Millisecond, want: 2 * time.Second},
		{name: "forgiven", good: 3 * time.Second, want: time.Second},
		{name: "long forgiven", good: time.Hour, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEjector(config.OutlierDetection{BaseEjectionTime: time.Second, MaxEjectionTime: time.Minute, MaxEjectionPercent: 100})
			now := epoch
			for range 3 { // 1s, 2s, 4s
				until, _ := e.Eject("a", now, 10)
				now = until
				e.Expire(now)
			}
			now = now.Add(tt.good)
			until, ok := e.Eject("a", now, 10)
			if got := until.Sub(now); !ok || got != tt.want {
				t.Errorf("fourth Eject() after %v back lasts %v (ok %v), want %v", tt.good, got, ok, tt.want)
			}
		})
	}
}

func TestEjectorForget(t *testing.T) {
	e := testEjector()
	now := epoch
	for range 3 {
		until, _ := e.Eject("a", now, 10)
		now = until
		e.Expire(now)
	}
	e.Eject("a", now, 10)
	e.Forget("a")
	if _, ok := e.Ejected("a"); ok {
		t.Fatal("Ejected(a) = true after Forget")
	}
	if _, ok := e.NextExpiry(); ok {
		t.Fatal("NextExpiry() ok = true after Forget")
	}
	until, ok := e.Eject("a", now, 10)
	if got := until.Sub(now); !ok || got != time.Second {
		t.Errorf("Eject() after Forget lasts %v (ok %v), want 1s: history forgotten", got, ok)
	}
	e.Forget("unknown") // no-op
}
