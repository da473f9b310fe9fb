package balancer

import (
	"fmt"
	"testing"
	"time"
)

var benchSizes = []int{2, 16, 128, 1024}

// loadedTargets is n equal backends that are all busy (one request in
// flight) and all have a latency estimate: the worst case for the
// load-aware pickers (least_conn cannot stop early at an idle backend,
// ewma must decay two estimates).
func loadedTargets(n int) []Target {
	targets := equalTargets(n)
	now := time.Now().UnixNano()
	for i, t := range targets {
		t.Backend.Begin()
		t.Backend.ObserveLatency(now, int64(i+1)*int64(time.Millisecond), int64(10*time.Second))
	}
	return targets
}

func BenchmarkPick(b *testing.B) {
	for _, algorithm := range algorithms {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", algorithm, n), func(b *testing.B) {
				p := mustBuild(b, algorithm, loadedTargets(n), Options{})
				now := time.Now().UnixNano()
				rnd := &fakeRand{}
				b.ReportAllocs()
				sink := 0
				for b.Loop() {
					sink += p.Pick(rnd.next(), now)
				}
				if sink < 0 {
					b.Fatal("Pick() = -1")
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, algorithm := range algorithms {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", algorithm, n), func(b *testing.B) {
				p := mustBuild(b, algorithm, loadedTargets(n), Options{})
				now := time.Now().UnixNano()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					rnd := &fakeRand{state: uint64(time.Now().UnixNano())}
					sink := 0
					for pb.Next() {
						sink += p.Pick(rnd.next(), now)
					}
					if sink < 0 {
						b.Error("Pick() = -1")
					}
				})
			})
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	const n = 1024
	mixed := make([]uint32, n)
	for i := range mixed {
		mixed[i] = uint32(i%100 + 1)
	}
	pools := []struct {
		name    string
		targets []Target
	}{
		{name: fmt.Sprintf("n=%d", n), targets: equalTargets(n)},
		{name: fmt.Sprintf("n=%d,weights=1-100", n), targets: targetsWithWeights(mixed...)},
	}
	for _, algorithm := range algorithms {
		for _, pool := range pools {
			b.Run(algorithm+"/"+pool.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					mustBuild(b, algorithm, pool.targets, Options{})
				}
			})
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	for _, n := range []int{8, 32, 128} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte('a' + i%26)
		}
		b.Run(fmt.Sprintf("len=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var sink uint64
			for b.Loop() {
				sink += HashKey(key)
			}
			_ = sink
		})
	}
}
