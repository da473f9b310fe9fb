package config

import (
	"strings"
	"testing"
)

// TestStickyCookieShared: two pools may not keep affinity in one cookie
// name (a browser keeps one value per name, so each pool overwrote the
// other's sessions; found by review), whether the name is the default or
// set.
func TestStickyCookieShared(t *testing.T) {
	const head = "routes: [{pool: a}, {match: {path_prefix: /b}, pool: b}]\npools:\n"
	tests := []struct {
		name, pools string
		wantErr     string // "" for none
	}{
		{"two defaults", "  a: {algorithm: sticky, backends: [{address: '127.0.0.1:1'}]}\n  b: {algorithm: sticky, backends: [{address: '127.0.0.1:2'}]}\n",
			"s.yaml:4: pools.b.algorithm: affinity cookie sluice_affinity is pool a's too"},
		{"two names alike", "  a: {sticky: {cookie: s}, backends: [{address: '127.0.0.1:1'}]}\n  b: {sticky: {cookie: s}, backends: [{address: '127.0.0.1:2'}]}\n",
			"s.yaml:4: pools.b.sticky.cookie: affinity cookie s is pool a's too"},
		{"a name and the default alike", "  a: {algorithm: sticky, backends: [{address: '127.0.0.1:1'}]}\n  b: {sticky: {cookie: sluice_affinity}, backends: [{address: '127.0.0.1:2'}]}\n",
			"pools.b.sticky.cookie: affinity cookie sluice_affinity is pool a's too"},
		{"each its own", "  a: {algorithm: sticky, backends: [{address: '127.0.0.1:1'}]}\n  b: {algorithm: sticky, sticky: {cookie: b_s}, backends: [{address: '127.0.0.1:2'}]}\n", ""},
		{"one sticky pool", "  a: {algorithm: sticky, backends: [{address: '127.0.0.1:1'}]}\n  b: {backends: [{address: '127.0.0.1:2'}]}\n", ""},
	}
	// Pools only different hosts reach may share a name: the cookie has
	// no Domain, so a browser keeps one per host (found by review of the
	// first version of this check).
	const hosted = "routes: [{match: {host: shop.example.com}, pool: a}, {match: {host: '%s'}, pool: b}]\npools:\n" +
		"  a: {algorithm: sticky, backends: [{address: '127.0.0.1:1'}]}\n  b: {algorithm: sticky, backends: [{address: '127.0.0.1:2'}]}\n"
	for _, tc := range []struct {
		host    string
		overlap bool
	}{
		{"blog.example.com", false},
		{"*.example.org", false},
		{"*.example.com", true},
		{"SHOP.example.com", true},
	} {
		_, err := Parse("s.yaml", []byte(strings.Replace(hosted, "%s", tc.host, 1)))
		if got := err != nil && strings.Contains(err.Error(), "affinity cookie sluice_affinity is pool a's too"); got != tc.overlap {
			t.Errorf("pools on shop.example.com and %s sharing the default cookie: Parse = %v, want refused %v", tc.host, err, tc.overlap)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(head+tc.pools))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Parse = %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Parse = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
