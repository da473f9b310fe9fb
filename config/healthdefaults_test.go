package config

import (
	"slices"
	"testing"
)

// TestExpectStatusDefault: a health check's expect_status is 200-399 when
// not set, written out so /admin/config shows it, and a list in the file
// replaces it rather than adding to it.
func TestExpectStatusDefault(t *testing.T) {
	for _, tc := range []struct {
		check string
		want  []StatusRange
	}{
		{"{}", []StatusRange{{200, 399}}},
		{"{expect_status: [204]}", []StatusRange{{204, 204}}},
		{"{expect_status: [200, 300-302]}", []StatusRange{{200, 200}, {300, 302}}},
	} {
		c, err := Parse("s.yaml", []byte("routes: [{pool: p}]\npools:\n  p:\n    health_check: "+tc.check+"\n    backends: [{address: '127.0.0.1:1'}]\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.check, err)
		}
		if got := c.Pools["p"].HealthCheck.ExpectStatus; !slices.Equal(got, tc.want) {
			t.Errorf("health_check %s: expect_status %v, want %v", tc.check, got, tc.want)
		}
	}
}
