package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: a null item in health_check.expect_status (`expect_status: [~]`,
// or a dangling "-" left after deleting a code from a block list) is
// accepted as the range 0-0. decode.go decode() returns early on a null
// node ("an empty value keeps the default"), but a list item has no
// default: sequence() made it StatusRange{0, 0}, which ParseStatusRange
// never accepts (codes are 100-599), and validate.go checks nothing of
// ExpectStatus. health/probe.go then matches the backend's status against
// 0-0 only, so every probe fails ("status 200") and the whole pool is
// marked down, with -check saying the file is valid. README: "invalid
// values are errors"; expect_status is "codes or ranges" (default
// 200-399). The running config does not load back either (0 is written
// out and refused). The null items of the two other lists are refused
// (backends[i].address and routes[i].pool are "required"); these are not.
// Expected: refused at the item's line and path (or, at least, no range
// outside 100-599 in the parsed config).
func TestExpectStatusNullItem(t *testing.T) {
	tests := []struct{ name, text, wantPath string }{
		{"only item empty", refBase + "    health_check:\n      expect_status:\n        -\n",
			"pools.web.health_check.expect_status[0]"},
		{"flow null item", refBase + "    health_check:\n      expect_status: [~]\n",
			"sluice.yaml:6: pools.web.health_check.expect_status[0]"},
		{"dangling dash", refBase + "    health_check:\n      expect_status:\n        - 200-299\n        -\n",
			"pools.web.health_check.expect_status[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("sluice.yaml", []byte(tt.text))
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantPath) {
					t.Fatalf("Parse() error =\n%v\nwant it at %q", err, tt.wantPath)
				}
				return
			}
			for i, r := range c.Pools["web"].HealthCheck.ExpectStatus {
				if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
					t.Errorf("accepted: expect_status[%d] = %d-%d, a range no status is in (alone, every probe fails and the pool goes down); want an error at %s",
						i, r.Lo, r.Hi, tt.wantPath)
				}
			}
		})
	}
}
