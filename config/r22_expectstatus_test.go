package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: `expect_status: []` is accepted and kept as an empty list: the
// prober then falls back to 200-399 (health/probe.go: len(expect) == 0),
// while /admin/config shows `expect_status: []`, which says no status
// passes. The config package writes the default out precisely so that
// /admin/config "shows what is in force rather than []" (HealthCheck's
// setDefaults); an empty list written in the file defeats that, and a
// list item left empty (`[~]`) is already refused (README: "A list item
// left empty ... is an error"). Expected: refused at its line, or read as
// the default 200-399, as the prober takes it.
func TestExpectStatusEmptyList(t *testing.T) {
	text := "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n    health_check: {expect_status: []}\n"
	c, err := Parse("sluice.yaml", []byte(text))
	if err != nil {
		if !strings.Contains(err.Error(), "sluice.yaml:5: pools.web.health_check.expect_status") {
			t.Errorf("error = %v, want it at line 5, naming pools.web.health_check.expect_status", err)
		}
		return
	}
	if got := c.Pools["web"].HealthCheck.ExpectStatus; len(got) == 0 {
		t.Errorf("expect_status: [] accepted as %v: the probe passes 200-399, the running config says none", got)
	}
}
