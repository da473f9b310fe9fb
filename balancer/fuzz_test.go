package balancer

import (
	"encoding/binary"
	"testing"
)

// FuzzBuildPick builds every algorithm from arbitrary weights and picks
// with arbitrary keys and clocks: no panic, and the index is always a
// positive-weight target, or -1 exactly when there is none.
func FuzzBuildPick(f *testing.F) {
	f.Add([]byte{1, 0, 5, 0}, false, uint64(0), int64(0), uint16(0), uint64(0))
	f.Add([]byte{0, 0}, false, uint64(1), int64(1), uint16(7), uint64(3))
	f.Add([]byte{0xff, 0xff, 1, 0, 0, 0}, true, ^uint64(0), int64(-1), uint16(1000), ^uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, huge bool, key uint64, now int64, tableSize uint16, seed uint64) {
		// Two bytes per weight, at most 64 targets; huge stretches them
		// to the top of the uint32 range (65535·65537 = 2^32−1). The key's
		// bits decide which targets hold a request.
		var weights []uint32
		for len(raw) >= 2 && len(weights) < 64 {
			w := uint32(binary.LittleEndian.Uint16(raw))
			if huge {
				w *= 65537
			}
			weights = append(weights, w)
			raw = raw[2:]
		}
		targets := targetsWithWeights(weights...)
		positive := false
		for i, w := range weights {
			positive = positive || w > 0
			if key>>(i%64)&1 == 1 {
				targets[i].Backend.Begin()
			}
			if i%3 == 0 {
				targets[i].Backend.ObserveLatency(now, int64(key%1e9), 1e9)
			}
		}
		opts := Options{Seed: seed, MaglevTableSize: int(tableSize % 5000)}
		for _, algorithm := range algorithms {
			p := mustBuild(t, algorithm, targets, opts)
			k := key
			for range 16 {
				got := p.Pick(k, now)
				switch {
				case !positive && got != -1:
					t.Fatalf("%s: Pick() = %d, want -1 (no positive weight in %v)", algorithm, got, weights)
				case positive && (got < 0 || got >= len(targets)):
					t.Fatalf("%s: Pick() = %d, want an index below %d", algorithm, got, len(targets))
				case positive && weights[got] == 0:
					t.Fatalf("%s: Pick() = %d, a weight-0 target (weights %v)", algorithm, got, weights)
				}
				k = mix64(k)
			}
		}
	})
}
