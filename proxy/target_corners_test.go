package proxy

import "testing"

// TestCheckTargetCorners: the "//" before ".." refusal leaves
// legitimate targets alone, and still catches the forms that route
// elsewhere than the backend reads them.
func TestCheckTargetCorners(t *testing.T) {
	tests := []struct {
		name string
		give string
		want int
	}{
		{"double slash in query", "/a?u=http://x/../y", 0},
		{"double slash without dots", "/x//y", 0},
		{"dots inside a segment", "/a//b..c/..d", 0},
		{"dot dot before double slash", "/a/..//b", 0},
		{"escaped, no dots", "/a//%41", 0},
		{"absolute form, double slash later", "http://h/a//b", 0},
		{"empty segment before dot dot", "/a//../b", 400},
		{"empty segment, dot dot later", "/a//b/../c", 400},
		{"absolute form, empty segment before dot dot", "http://h/a//../b", 400},
		{"escaped dot dot after empty segment", "/a//%2e%2e/b", 400},
		{"trailing dot dot", "/a//..", 400},
		{"dot dot before query", "/a//..?x", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, msg := checkTarget([]byte(tt.give)); got != tt.want {
				t.Errorf("checkTarget(%q) = %d %q, want %d", tt.give, got, msg, tt.want)
			}
		})
	}
}
