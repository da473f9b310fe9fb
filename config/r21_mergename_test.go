package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: a pool named "<<" (quoted) was taken,
// but yaml.v3 writes the name back plain, where YAML reads it as a merge
// key: GET /admin/config, which marshals the running config and reads it
// back, showed the pool's fields (algorithm, backends, ...) as pools. The
// name is refused instead.
func TestPoolNamedMergeKeyRefused(t *testing.T) {
	yml := "routes: [{pool: \"<<\"}, {match: {path_prefix: /w/}, pool: web}]\npools:\n" +
		"  \"<<\": {algorithm: round_robin, backends: [{address: 127.0.0.1:9001}]}\n" +
		"  web: {backends: [{address: 127.0.0.1:9002}]}\n"
	_, err := Parse("sluice.yaml", []byte(yml))
	if err == nil {
		t.Fatal("Parse() accepted a pool named <<")
	}
	if want := "sluice.yaml:3: pools.<<: << is YAML's merge key"; !strings.Contains(err.Error(), want) {
		t.Errorf("Parse() error =\n%v\nwant it to contain %q", err, want)
	}
}
