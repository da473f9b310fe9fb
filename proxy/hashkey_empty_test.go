package proxy

import (
	"fmt"
	"testing"
)

// TestEmptyHashKeyRandomPick: README.md:793, "A request that
// lacks the key (or has it empty) gets a random pick". keys_test checks
// only that a request without the key is served; here a header key sent
// empty spreads over the pool, and a set one stays on one backend.
func TestEmptyHashKeyRandomPick(t *testing.T) {
	y := "routes: [{ pool: p }]\npools:\n  p:\n    algorithm: maglev\n    hash_key: header:X-K\n    backends:\n"
	for i := range 4 {
		b := startBackend(t, fmt.Sprint("b", i), nil)
		y += "      - { address: " + b.addr() + " }\n"
	}
	px := startProxy(t, y)
	c := testClient(t)
	tests := []struct {
		name    string
		give    string
		wantOne bool
	}{
		{"empty key", "", false},
		{"set key", "user-42", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]int{}
			for range 40 {
				code, from, _ := get(t, c, "http://"+px.addr+"/", map[string]string{"X-K": tt.give})
				if code != 200 {
					t.Fatalf("GET = %d, want 200", code)
				}
				seen[from]++
			}
			// 40 random picks over 4 backends all on one: p = 4^-39.
			if one := len(seen) == 1; one != tt.wantOne {
				t.Errorf("X-K %q: backends %v, want all on one = %v", tt.give, seen, tt.wantOne)
			}
		})
	}
}
