package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: an error about a list item or pool written as an alias (*name)
// is placed at the line of the anchor it copies, not at the alias's own
// line, so the message names one item at another item's line. decode.go
// decode() follows an AliasNode into its target and records that
// target's line for the path (d.lines[path] = n.Line of the anchored
// node), and structure() records the anchored keys' lines for every field
// below; validate.go's duplicate checks, which are about the use (the
// alias) and not about the value, then report e.g.
// "sluice.yaml:2: routes[1].match: same match as routes[0]" where
// routes[1] is on line 3 and line 2 is routes[0]. README (Configuration
// reference): every error is reported "with file, line and field path",
// and "Anchors and aliases work". Expected: the alias's line for the
// paths under it (decode could pass the alias node's line down and
// record it instead of the anchored nodes' lines, as a second use of an
// anchor already reports its value errors once at the anchor).
func TestAliasErrorLine(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"route repeated through an alias",
			"routes:\n  - &r {pool: web, match: {path_prefix: /a}}\n  - *r\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n",
			"sluice.yaml:3: routes[1].match: same match as routes[0]"},
		{"backend repeated through an alias",
			"routes: [{pool: web}]\npools:\n  web:\n    backends:\n      - &b\n        address: 127.0.0.1:9001\n      - *b\n",
			"sluice.yaml:7: pools.web.backends[1].address: duplicate backend"},
		{"sticky pool copied through an alias",
			"routes: [{pool: web}, {pool: zed, match: {path_prefix: /z}}]\npools:\n  web: &w\n    algorithm: sticky\n    backends: [{address: 127.0.0.1:9001}]\n  zed: *w\n",
			"sluice.yaml:6: pools.zed.algorithm: affinity cookie sluice_affinity is pool web's too"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := refErrs(t, tt.text)
			if errs == nil {
				t.Fatalf("Parse() accepted, want %q", tt.want)
			}
			if !strings.Contains(errs.Error(), tt.want) {
				t.Errorf("Parse() error =\n%v\nwant it to contain %q (the alias's line)", errs, tt.want)
			}
		})
	}
}
