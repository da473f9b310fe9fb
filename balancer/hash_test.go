package balancer

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"testing"
)

// Golden values: HashKey has no seed, so these must hold in every process
// on every platform. A change here breaks every deployed hash mapping.
func TestHashKeyGolden(t *testing.T) {
	tests := []struct {
		give string
		want uint64
	}{
		{give: "", want: 0xe220a8397b1dcdaf},
		{give: "a", want: 0x3c5d4b15ed647909},
		{give: "abcd", want: 0x2cd6805854da7800},
		{give: "1234567", want: 0x8ae93fd901a323d3},
		{give: "10.0.0.1", want: 0x499cb559fd043d1e},
		{give: "203.0.113.7", want: 0xb7710710e32bc71},
		{give: "session=0f3c9a2e7b1d4c58a9e6", want: 0xac2d8f597e583ba9},
		{give: "/api/v1/users/42?expand=true", want: 0xb520f2386fe02e},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := HashString(tt.give); got != tt.want {
				t.Errorf("HashString(%q) = %#x, want %#x", tt.give, got, tt.want)
			}
			if got := HashKey([]byte(tt.give)); got != tt.want {
				t.Errorf("HashKey(%q) = %#x, want %#x", tt.give, got, tt.want)
			}
		})
	}
}

// Every output bit of the hash should be set about half the time, and
// flipping any input bit should flip about half the output bits; pickers
// use both the high bits (ring, alias column) and the low bits (maglev).
func TestHashKeyMixing(t *testing.T) {
	const keys = 20_000
	var ones [64]int
	var flipped, trials int
	for i := range keys {
		key := []byte(fmt.Sprintf("client-%d", i))
		h := HashKey(key)
		for b := range 64 {
			ones[b] += int(h >> b & 1)
		}
		bit := i % (8 * len(key))
		key[bit/8] ^= 1 << (bit % 8)
		flipped += bits.OnesCount64(h ^ HashKey(key))
		trials++
	}
	for b, n := range ones {
		if share := float64(n) / keys; math.Abs(share-0.5) > 0.02 {
			t.Errorf("output bit %d set in %.3f of hashes, want 0.5 ± 0.02", b, share)
		}
	}
	if avg := float64(flipped) / float64(trials); math.Abs(avg-32) > 0.5 {
		t.Errorf("bits flipped per input bit flip = %.2f, want 32 ± 0.5", avg)
	}
}

func FuzzHashKey(f *testing.F) {
	for _, s := range []string{"", "a", "10.0.0.1", "session=0f3c9a2e7b1d4c58a9e6", "\x00\xff\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		orig := bytes.Clone(key)
		got := HashKey(key)
		if !bytes.Equal(key, orig) {
			t.Fatalf("HashKey modified its input")
		}
		if again := HashKey(bytes.Clone(key)); again != got {
			t.Errorf("HashKey() = %#x then %#x, want the same", got, again)
		}
		if s := HashString(string(key)); s != got {
			t.Errorf("HashString() = %#x, want HashKey() = %#x", s, got)
		}
	})
}

// mapping returns the address each of n keys maps to.
func mapping(t *testing.T, algorithm string, targets []Target, n int) []string {
	t.Helper()
	p := mustBuild(t, algorithm, targets, Options{})
	out := make([]string, n)
	for i := range out {
		idx := p.Pick(mix64(uint64(i)), 0)
		if idx < 0 {
			t.Fatalf("Pick() = -1, want a target")
		}
		out[i] = targets[idx].Backend.Addr
	}
	return out
}

func TestConsistentHashGolden(t *testing.T) {
	tests := []struct {
		algorithm string
		give      string
		want      string
	}{
		{algorithm: "ring_hash", give: "user-1", want: "10.0.0.9:8080"},
		{algorithm: "ring_hash", give: "user-2", want: "10.0.0.6:8080"},
		{algorithm: "ring_hash", give: "user-3", want: "10.0.0.6:8080"},
		{algorithm: "ring_hash", give: "203.0.113.7", want: "10.0.0.4:8080"},
		{algorithm: "ring_hash", give: "session=abc", want: "10.0.0.1:8080"},
		{algorithm: "ring_hash", give: "/cart", want: "10.0.0.9:8080"},
		{algorithm: "maglev", give: "user-1", want: "10.0.0.0:8080"},
		{algorithm: "maglev", give: "user-2", want: "10.0.0.9:8080"},
		{algorithm: "maglev", give: "user-3", want: "10.0.0.6:8080"},
		{algorithm: "maglev", give: "203.0.113.7", want: "10.0.0.1:8080"},
		{algorithm: "maglev", give: "session=abc", want: "10.0.0.8:8080"},
		{algorithm: "maglev", give: "/cart", want: "10.0.0.0:8080"},
	}
	targets := equalTargets(10)
	// The same pool listed in another order must map keys the same way.
	reversed := slices.Clone(targets)
	slices.Reverse(reversed)
	for _, tt := range tests {
		t.Run(tt.algorithm+"/"+tt.give, func(t *testing.T) {
			for _, give := range [][]Target{targets, reversed} {
				p := mustBuild(t, tt.algorithm, give, Options{})
				if got := give[p.Pick(HashString(tt.give), 0)].Backend.Addr; got != tt.want {
					t.Errorf("Pick(HashString(%q)) = %s, want %s", tt.give, got, tt.want)
				}
			}
		})
	}
}

func TestConsistentHashRemoveAndRestore(t *testing.T) {
	const keys = 100_000
	tests := []struct {
		algorithm string
		wantMoved float64 // the most keys that may move, as a fraction
		wantStay  bool    // keys of the remaining backends must not move
	}{
		{algorithm: "ring_hash", wantMoved: 0.1 + 0.05, wantStay: true},
		{algorithm: "maglev", wantMoved: 0.2},
	}
	for _, tt := range tests {
		for _, removed := range []int{0, 3, 9} {
			t.Run(fmt.Sprintf("%s/remove %d", tt.algorithm, removed), func(t *testing.T) {
				all := equalTargets(10)
				before := mapping(t, tt.algorithm, all, keys)
				rest := slices.Delete(slices.Clone(all), removed, removed+1)
				after := mapping(t, tt.algorithm, rest, keys)
				gone := all[removed].Backend.Addr
				moved, strayed := 0, 0
				for i := range before {
					if before[i] != after[i] {
						moved++
						if before[i] != gone {
							strayed++
						}
					}
					if after[i] == gone {
						t.Fatalf("key %d maps to removed backend %s", i, gone)
					}
				}
				t.Logf("moved %.4f of keys", float64(moved)/keys)
				if got := float64(moved) / keys; got > tt.wantMoved {
					t.Errorf("moved keys = %.4f, want <= %.4f", got, tt.wantMoved)
				}
				if tt.wantStay && strayed > 0 {
					t.Errorf("keys of remaining backends moved = %d, want 0", strayed)
				}
				restored := mapping(t, tt.algorithm, all, keys)
				if !slices.Equal(restored, before) {
					t.Errorf("mapping after adding %s back differs from the original", gone)
				}
			})
		}
	}
}

func TestConsistentHashSpread(t *testing.T) {
	const keys = 100_000
	tests := []struct {
		algorithm string
		give      []uint32
		want      float64 // allowed relative deviation from the weight share
	}{
		{algorithm: "ring_hash", give: []uint32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, want: 0.10},
		{algorithm: "ring_hash", give: []uint32{1, 2, 3, 4}, want: 0.10},
		{algorithm: "maglev", give: []uint32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, want: 0.03},
		{algorithm: "maglev", give: []uint32{1, 2, 3, 4}, want: 0.03},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.algorithm, tt.give), func(t *testing.T) {
			targets := targetsWithWeights(tt.give...)
			got := shares(t, mustBuild(t, tt.algorithm, targets, Options{}), len(targets), keys, &fakeRand{})
			want := weightShares(tt.give)
			worst := 0.0
			for i := range want {
				worst = max(worst, math.Abs(got[i]-want[i])/want[i])
			}
			t.Logf("worst relative deviation %.4f", worst)
			for i := range want {
				if math.Abs(got[i]-want[i])/want[i] > tt.want {
					t.Errorf("share of %s = %.4f, want %.4f ± %.0f%%", targets[i].Backend.Addr, got[i], want[i], 100*tt.want)
				}
			}
		})
	}
}

// The maglev table itself, not a sample of keys: every backend holds its
// weight's share of slots to within one slot per turn.
func TestMaglevTableShares(t *testing.T) {
	skewed := make([]uint32, 1024)
	for i := range skewed {
		skewed[i] = 1
	}
	skewed[500] = 1_000_000
	tests := []struct {
		name string
		give []uint32
		size int
	}{
		{name: "10 equal", give: []uint32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, size: 65537},
		{name: "weighted", give: []uint32{1, 2, 3, 4}, size: 65537},
		{name: "small table", give: []uint32{1, 1, 1}, size: 7},
		{name: "non-prime size", give: []uint32{1, 1}, size: 1000},
		{name: "one huge weight", give: skewed, size: 65537},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustBuild(t, "maglev", targetsWithWeights(tt.give...), Options{MaglevTableSize: tt.size}).(*maglev)
			if !isPrime(len(m.table)) || len(m.table) < tt.size {
				t.Fatalf("table size = %d, want a prime >= %d", len(m.table), tt.size)
			}
			counts := make([]float64, len(tt.give))
			for _, idx := range m.table {
				counts[idx]++
			}
			want := weightShares(tt.give)
			for i := range want {
				if diff := math.Abs(counts[i] - want[i]*float64(len(m.table))); diff > float64(len(tt.give)) {
					t.Errorf("slots of target %d = %.0f, want %.1f ± %d", i, counts[i], want[i]*float64(len(m.table)), len(tt.give))
				}
			}
		})
	}
}

// A pool whose weights are so large that the ring is scaled down still
// gives every backend a place and stays deterministic.
func TestRingHashScaled(t *testing.T) {
	targets := targetsWithWeights(1_000_000, 1, 4_000_000_000)
	r := mustBuild(t, "ring_hash", targets, Options{}).(*ringHash)
	if len(r.points) > maxRingPoints+len(targets) {
		t.Errorf("ring points = %d, want <= %d", len(r.points), maxRingPoints+len(targets))
	}
	owners := map[uint32]bool{}
	for i, p := range r.points {
		owners[p.index] = true
		if i > 0 && p.hash < r.points[i-1].hash {
			t.Fatalf("ring not sorted at %d", i)
		}
	}
	if len(owners) != len(targets) {
		t.Errorf("backends on the ring = %d, want %d", len(owners), len(targets))
	}
}
