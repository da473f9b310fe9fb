package balancer

import "math/bits"

// Multipliers: odd 64-bit constants with well-spread bits (the golden ratio
// and the splitmix64 / murmur3 finaliser constants), so every multiply
// carries each input bit into many output bits.
const (
	mulGolden = 0x9e3779b97f4a7c15
	mulMixA   = 0xbf58476d1ce4e5b9
	mulMixB   = 0x94d049bb133111eb
	mulWord   = 0xc2b2ae3d27d4eb4f
)

// HashKey hashes a request's hash key (a client address, a header or
// cookie value …) for ring_hash and maglev. It has no per-process seed:
// every sluice, every restart and every snapshot maps a key to the same
// place, which is what makes consistent hashing consistent. It does not
// allocate.
func HashKey(b []byte) uint64 { return hashBytes(b, 0) }

// HashString is HashKey of a string, without converting it to bytes.
func HashString(s string) uint64 { return hashBytes(s, 0) }

// hashBytes consumes eight bytes per multiply-rotate round and finishes
// with a full avalanche, so that both the high bits (ring position, alias
// column) and the low bits (maglev's modulo) of the result are well mixed.
// The seed gives the independent second hash maglev needs.
func hashBytes[T string | []byte](p T, seed uint64) uint64 {
	h := seed ^ uint64(len(p))*mulGolden
	for len(p) >= 8 {
		w := uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
			uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
		h ^= bits.RotateLeft64(w*mulWord, 31) * mulGolden
		h = bits.RotateLeft64(h, 27)*mulMixA + mulMixB
		p = p[8:]
	}
	if len(p) >= 4 {
		w := uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24
		h ^= w * mulWord
		h = bits.RotateLeft64(h, 23)*mulMixA + mulGolden
		p = p[4:]
	}
	for i := 0; i < len(p); i++ {
		h ^= uint64(p[i]) * mulGolden
		h = bits.RotateLeft64(h, 11) * mulMixB
	}
	return mix64(h)
}

// mix64 is the splitmix64 finaliser: a bijection on uint64 in which every
// input bit affects every output bit. Pickers use it to get fresh random
// bits out of one key (the second P2C draw) and to place ring points.
func mix64(x uint64) uint64 {
	x += mulGolden
	x = (x ^ x>>30) * mulMixA
	x = (x ^ x>>27) * mulMixB
	return x ^ x>>31
}
