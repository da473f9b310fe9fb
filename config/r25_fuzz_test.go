package config

import (
	"os"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzRunningConfigRoundTrip: /admin/config?format=yaml serves
// yaml.Marshal of the running Config as "the running config", and
// MarshalYAML's comment promises it "loads back". For any file Parse
// accepts, the marshalled config must parse again, and marshal to the
// same bytes (compared as written, as TestRunningConfigRoundTrip does: a
// discovery pool reads back "backends: []" as an empty list where the
// file had none). FuzzParse only re-parses the file's own bytes.
func FuzzRunningConfigRoundTrip(f *testing.F) {
	f.Add([]byte(validYAML))
	if b, err := os.ReadFile("../examples/full.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {backends: [{address: 1.2.3.4:5}]}}\n"))
	f.Add([]byte("routes: [{pool: 'a b#c', match: {host: '*.x', path_prefix: /a}}]\npools: {'a b#c': {backends: [{address: 1.2.3.4:5, weight: 0}], panic_threshold: 8.8%}}\n"))
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {algorithm: maglev, hash_key: 'header:X-User', backends: [{address: '[::1]:5'}], health_check: {path: /h, expect_status: [200-299, 304]}, outlier_detection: {max_ejection_percent: 33.3}}}\n"))
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {sticky: {cookie: s, secret: k}, backends: [{address: 1.2.3.4:5}]}}\ntimeouts: {connect: 1500ms}\n"))
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {discovery: {dns: {name: a.b, port: 1}}}}\n"))
	// Strings the YAML emitter must quote or escape to read back the same.
	for _, secret := range []string{`"a\u2028b"`, `"a\u0085b"`, `" lead "`, `"x\r\ny\t"`, `"\ufeffx"`, `"#x"`, `"\x7f\x01"`, `"null"`, `"1e3"`} {
		f.Add([]byte("routes: [{pool: p}]\npools: {p: {sticky: {cookie: s, secret: " + secret + "}, backends: [{address: 1.2.3.4:5}]}}\n"))
	}
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {panic_threshold: 0.0000001, slow_start: 1.5s, ewma_window: 1500us, backends: [{address: 1.2.3.4:5}]}}\naccess_log: {enabled: true, path: \"/tmp/a b \", sample: 0.000000001}\nshutdown_delay: 1ns\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v\nfile:\n%s", err, data)
		}
		c2, err := Parse("running.yaml", out)
		if err != nil {
			t.Fatalf("the marshalled running config does not load:\n%v\nfile:\n%s\nrunning config:\n%s", err, data, out)
		}
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatalf("reloaded config does not marshal: %v", err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the config\nfile:\n%s\nrunning:\n%s\nreloaded:\n%s", data, out, out2)
		}
	})
}
