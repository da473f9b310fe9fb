package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: README (Configuration reference) says "merge keys (`<<: *base`)
// are refused as an unknown field", and inside a pool, a route or any
// other struct they are (decode.go structure). In the one map of the
// file, pools, decode.go mapping takes every key as a pool name, the
// merge key too: `<<: *w` under pools is accepted as a pool named "<<"
// (a copy of web, served by no route, with its own health checks and
// metrics series pool="<<"), and nothing is merged. yaml.v3 itself would
// merge there, so a user who meant "pools: {<<: *shared_pools, ...}"
// gets neither what YAML means nor the documented refusal. Expected: the
// error README promises, at the key's line; e.g. in mapping(), refuse a
// key node whose Tag is "!!merge" as structure() does.
func TestMergeKeyInPoolsRefused(t *testing.T) {
	text := "routes: [{pool: web}]\n" +
		"pools:\n" +
		"  web: &w\n" +
		"    backends: [{address: 127.0.0.1:9001}]\n" +
		"  <<: *w\n"
	c, err := Parse("sluice.yaml", []byte(text))
	if err == nil {
		t.Fatalf("Parse() accepted a merge key under pools (pools %q), want an error at sluice.yaml:5", c.PoolNames())
	}
	if !strings.Contains(err.Error(), "sluice.yaml:5: pools.<<") {
		t.Errorf("Parse() error =\n%v\nwant it at sluice.yaml:5, pools.<<", err)
	}
}

func TestAliasKeysRefused(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"in pools", "x: &n web\nroutes: [{pool: web}]\npools:\n  *n : {backends: [{address: 127.0.0.1:9001}]}\n", "sluice.yaml:4: pools.n: an alias (*name) cannot be a key"},
		{"in a struct", "x: &n listen\n*n : 127.0.0.1:8080\nroutes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\n", "sluice.yaml:2: n: an alias (*name) cannot be a key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error = %v, want %q", err, tt.want)
			}
		})
	}
}
