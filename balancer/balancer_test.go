package balancer

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBuildUnknown(t *testing.T) {
	if _, err := Build("fastest", nil, Options{}); err == nil {
		t.Errorf("Build(%q) error = nil, want an error", "fastest")
	}
	for _, name := range algorithms {
		if !Known(name) {
			t.Errorf("Known(%q) = false, want true", name)
		}
	}
	if Known("sticky") {
		t.Errorf("Known(%q) = true, want false (sticky lives in the proxy)", "sticky")
	}
}

// With no load and no latency samples every algorithm but the hash ones
// must hand out traffic in proportion to the weights.
func TestWeightedShares(t *testing.T) {
	tests := []struct {
		name string
		give []uint32
	}{
		{name: "equal", give: []uint32{1, 1, 1, 1}},
		{name: "5,1,1", give: []uint32{5, 1, 1}},
		{name: "with zero", give: []uint32{3, 0, 2, 5}},
		{name: "skewed", give: []uint32{1, 10, 100}},
		{name: "huge", give: []uint32{4_000_000_000, 1_000_000_000, 1}},
		{name: "single", give: []uint32{7}},
	}
	for _, algorithm := range []string{"round_robin", "random", "least_conn", "p2c", "ewma"} {
		for _, tt := range tests {
			t.Run(algorithm+"/"+tt.name, func(t *testing.T) {
				p := mustBuild(t, algorithm, targetsWithWeights(tt.give...), Options{Seed: 42})
				got := shares(t, p, len(tt.give), 100_000, &fakeRand{})
				want := weightShares(tt.give)
				for i := range want {
					if math.Abs(got[i]-want[i]) > 0.02 {
						t.Errorf("share of target %d = %.4f, want %.4f ± 0.02 (all: %.4f)", i, got[i], want[i], got)
					}
				}
			})
		}
	}
}

func TestWeightZeroAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		give []Target
		want []int // the only acceptable results
	}{
		{name: "nil", give: nil, want: []int{-1}},
		{name: "empty", give: []Target{}, want: []int{-1}},
		{name: "all zero", give: targetsWithWeights(0, 0, 0), want: []int{-1}},
		{name: "one positive", give: targetsWithWeights(0, 3, 0), want: []int{1}},
		{name: "zeros around", give: targetsWithWeights(0, 1, 0, 1, 0), want: []int{1, 3}},
		{name: "nil backend", give: []Target{{Weight: 5}, targetsWithWeights(1)[0]}, want: []int{1}},
	}
	for _, algorithm := range algorithms {
		for _, tt := range tests {
			t.Run(algorithm+"/"+tt.name, func(t *testing.T) {
				p := mustBuild(t, algorithm, tt.give, Options{})
				rnd := &fakeRand{}
				for range 10_000 {
					if got := p.Pick(rnd.next(), 1); !slices.Contains(tt.want, got) {
						t.Fatalf("Pick() = %d, want one of %v", got, tt.want)
					}
				}
			})
		}
	}
}

// A backend that is already holding many requests must be left alone by
// the load-aware algorithms.
func TestHotBackendAvoided(t *testing.T) {
	tests := []struct {
		name      string
		algorithm string
		give      []uint32
		hot       int
		wantMax   float64 // the most of the picks the hot backend may get
	}{
		{name: "equal", algorithm: "least_conn", give: []uint32{1, 1, 1, 1}, hot: 2, wantMax: 0},
		{name: "weighted", algorithm: "least_conn", give: []uint32{10, 1, 1}, hot: 0, wantMax: 0},
		{name: "equal", algorithm: "p2c", give: []uint32{1, 1, 1, 1}, hot: 2, wantMax: 0},
		{name: "weighted", algorithm: "p2c", give: []uint32{10, 1, 1}, hot: 0, wantMax: 0},
		{name: "two", algorithm: "p2c", give: []uint32{1, 1}, hot: 1, wantMax: 0},
		{name: "equal", algorithm: "ewma", give: []uint32{1, 1, 1, 1}, hot: 2, wantMax: 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.algorithm+"/"+tt.name, func(t *testing.T) {
			targets := targetsWithWeights(tt.give...)
			now := int64(1e12)
			for _, tg := range targets {
				tg.Backend.ObserveLatency(now, int64(time.Millisecond), int64(time.Second))
			}
			for range 1000 {
				targets[tt.hot].Backend.Begin()
			}
			p := mustBuild(t, tt.algorithm, targets, Options{})
			rnd := &fakeRand{}
			hot := 0
			const picks = 10_000
			for range picks {
				if p.Pick(rnd.next(), now) == tt.hot {
					hot++
				}
			}
			if got := float64(hot) / picks; got > tt.wantMax {
				t.Errorf("hot backend share = %.4f, want <= %.4f", got, tt.wantMax)
			}
		})
	}
}

// least_conn must spread idle ties by weight, not hand them all to the
// first target.
func TestLeastConnPrefersLeastLoaded(t *testing.T) {
	targets := targetsWithWeights(1, 1, 1)
	targets[0].Backend.Begin()
	targets[0].Backend.Begin()
	targets[1].Backend.Begin()
	p := mustBuild(t, "least_conn", targets, Options{})
	rnd := &fakeRand{}
	for range 1000 {
		if got := p.Pick(rnd.next(), 0); got != 2 {
			t.Fatalf("Pick() = %d, want 2 (the only idle target)", got)
		}
	}
	targets[2].Backend.Begin()
	targets[2].Backend.Begin()
	for range 1000 {
		if got := p.Pick(rnd.next(), 0); got != 1 {
			t.Fatalf("Pick() = %d, want 1 (one in flight against two)", got)
		}
	}
}

// A backend whose latency jumps 10× must lose most of its share within 50
// requests, and win it back once it is fast again.
func TestEWMAFollowsLatency(t *testing.T) {
	const (
		n      = 4
		slow   = 0
		window = 100 * time.Millisecond
		step   = int64(time.Millisecond) // fake time between requests
	)
	targets := equalTargets(n)
	p := mustBuild(t, "ewma", targets, Options{EWMAWindow: window})
	latency := []int64{1e6, 1e6, 1e6, 1e6}
	rnd := &fakeRand{}
	now := int64(1e12)
	// run sends requests one at a time and returns how many went to the
	// slow backend in each of the given consecutive spans.
	run := func(spans ...int) []int {
		got := make([]int, len(spans))
		for s, span := range spans {
			for range span {
				now += step
				i := p.Pick(rnd.next(), now)
				if i == slow {
					got[s]++
				}
				targets[i].Backend.ObserveLatency(now, latency[i], int64(window))
			}
		}
		return got
	}

	if got := run(1000)[0]; got < 200 || got > 300 {
		t.Fatalf("warm-up picks of backend %d = %d of 1000, want about 250", slow, got)
	}
	latency[slow] = 10e6
	got := run(50, 950)
	t.Logf("slowed: %d of the first 50, %d of the next 950", got[0], got[1])
	if got[0] > 5 {
		t.Errorf("picks of the slowed backend in the first 50 = %d, want <= 5", got[0])
	}
	if got[1] > 950/20 {
		t.Errorf("picks of the slowed backend in the next 950 = %d, want <= %d (5%%)", got[1], 950/20)
	}
	latency[slow] = 1e6
	got = run(1000, 1000)
	t.Logf("recovered: %d of the first 1000, %d of the next 1000", got[0], got[1])
	if got[1] < 200 {
		t.Errorf("picks of the recovered backend = %d of 1000, want >= 200 (fair: 250)", got[1])
	}
}

// A backend with no samples scores zero and is tried at once.
func TestEWMATriesNewBackends(t *testing.T) {
	targets := equalTargets(2)
	now := int64(1e12)
	targets[0].Backend.ObserveLatency(now, 5e6, int64(time.Second))
	p := mustBuild(t, "ewma", targets, Options{})
	if got := p.Pick(12345, now); got != 1 {
		t.Errorf("Pick() = %d, want 1 (the backend with no samples)", got)
	}
}

// Pickers are read by many goroutines through one atomic.Pointer while the
// control plane publishes new ones; run with -race.
func TestConcurrentPickAndPublish(t *testing.T) {
	type snapshot struct {
		targets []Target
		picker  Picker
	}
	backends := equalTargets(16)
	build := func(round int) *snapshot {
		algorithm := algorithms[round%len(algorithms)]
		// Vary the ready set and the weights as the control plane would.
		var targets []Target
		for i, b := range backends {
			if (i+round)%5 != 0 {
				targets = append(targets, Target{Backend: b.Backend, Weight: uint32((i + round) % 4)})
			}
		}
		// Not mustBuild: this also runs on the publisher goroutine, where
		// t.Fatal must not be called.
		p, err := Build(algorithm, targets, Options{Seed: uint64(round)})
		if err != nil {
			t.Errorf("Build(%q) error = %v", algorithm, err)
			p = none{}
		}
		return &snapshot{targets: targets, picker: p}
	}
	var current atomic.Pointer[snapshot]
	current.Store(build(0))

	deadline := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	var picks atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			rnd := &fakeRand{state: uint64(g) << 32}
			for time.Now().Before(deadline) {
				for range 100 {
					s := current.Load()
					now := time.Now().UnixNano()
					i := s.picker.Pick(rnd.next(), now)
					if i < -1 || i >= len(s.targets) {
						t.Errorf("Pick() = %d, want -1 or an index below %d", i, len(s.targets))
						return
					}
					if i >= 0 {
						b := s.targets[i].Backend
						b.Begin()
						b.ObserveLatency(now, int64(rnd.next()%1e6), int64(time.Second))
						b.End()
						picks.Add(1)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for round := 1; time.Now().Before(deadline); round++ {
			current.Store(build(round))
		}
	})
	wg.Wait()
	if picks.Load() == 0 {
		t.Errorf("picks = 0, want some")
	}
}

func TestExpNeg(t *testing.T) {
	tests := []struct {
		name string
		give float64
		want float64
	}{
		{name: "zero", give: 0, want: 1},
		{name: "negative", give: -3, want: 1},
		{name: "infinity", give: math.Inf(1), want: 0},
		{name: "nan", give: math.NaN(), want: 0},
		{name: "underflow", give: 800, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := expNeg(tt.give); got != tt.want {
				t.Errorf("expNeg(%v) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
	prev := 2.0
	for x := 0.0; x < 700; x += 0.0007 {
		got, want := expNeg(x), math.Exp(-x)
		if math.Abs(got-want) > 4e-6*want {
			t.Fatalf("expNeg(%v) = %v, want %v ± 4e-6 relative", x, got, want)
		}
		if got > prev*(1+1e-5) {
			t.Fatalf("expNeg(%v) = %v rises above expNeg of a smaller x (%v)", x, got, prev)
		}
		prev = got
	}
}

// The ewma picker's one-exponential comparison must agree with comparing
// the backends' DecayedEWMA readings; a backend with no sample and
// requests in flight loses to any other, and two such compare their
// in-flight counts per unit of weight.
func TestEWMAComparisonMatchesDecayedEWMA(t *testing.T) {
	const window = int64(time.Second)
	p := mustBuild(t, "ewma", targetsWithWeights(1, 1), Options{EWMAWindow: time.Second}).(*peakEWMA)
	rnd := &fakeRand{}
	now := int64(1e12)
	for range 10_000 {
		targets := targetsWithWeights(uint32(1+rnd.next()%5), uint32(1+rnd.next()%5))
		members := make([]member, 2)
		for i, tg := range targets {
			if rnd.next()%4 != 0 { // sometimes no sample at all
				tg.Backend.ObserveLatency(now-int64(rnd.next()%uint64(3*window)), int64(rnd.next()%1e8), window)
			}
			for range rnd.next() % 4 {
				tg.Backend.Begin()
			}
			members[i] = member{backend: tg.Backend, weight: uint64(tg.Weight)}
		}
		score := func(m member) float64 {
			return m.backend.DecayedEWMA(now, window) * float64(m.backend.InFlight()+1) / float64(m.weight)
		}
		waiting := func(m member) bool { return m.backend.EWMA() == 0 && m.backend.InFlight() > 0 }
		a, b := score(members[0]), score(members[1])
		var want bool
		switch wa, wb := waiting(members[0]), waiting(members[1]); {
		case wa && wb:
			la := float64(members[0].backend.InFlight()) / float64(members[0].weight)
			lb := float64(members[1].backend.InFlight()) / float64(members[1].weight)
			want = la > lb
		case wa || wb:
			want = wa
		case math.Abs(a-b) <= 1e-5*max(a, b):
			continue // too close to call within expNeg's precision
		default:
			want = a > b
		}
		if got := p.slower(&members[0], &members[1], now); got != want {
			t.Fatalf("slower() = %v, want %v (scores %v and %v)", got, want, a, b)
		}
	}
}
