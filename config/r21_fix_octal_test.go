package config

import "testing"

// BUG (minor): the leading-zero check that refuses `weight: 010` (read by
// yaml.v3 as YAML 1.1's octal 8) misses the same number written with a
// digit separator: `weight: 0_10` is still taken silently as 8, and
// `max_conns_per_backend: 0_100` as 64. yaml.v3 strips underscores before
// strconv.ParseInt(plain, 0, 64), so 0_10 is octal exactly as 010 is, but
// leadingZero (decode.go:267-270) looks at the raw text, where the byte
// after the 0 is '_', not a digit. Expected: refused like 010 (or read as
// 10); actual: accepted as 8 and 64.
func TestLeadingZeroWithUnderscoreNotOctal(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte("routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001, weight: 0_10}]\n"+
		"limits: {max_conns_per_backend: 0_100}\n"))
	if err != nil {
		return // refused: right
	}
	if w := c.Pools["web"].Backends[0].Weight; w != 10 {
		t.Errorf("weight: 0_10 accepted as %d, want an error (or 10), as for weight: 010", w)
	}
	if n := c.Limits.MaxConnsPerBackend; n != 100 {
		t.Errorf("max_conns_per_backend: 0_100 accepted as %d, want an error (or 100)", n)
	}
}
