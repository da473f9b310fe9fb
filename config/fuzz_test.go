package config

import (
	"strings"
	"testing"
)

// FuzzParse: no input may panic the loader, and an accepted config must
// be one that validates again from its own source.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("pools: { p: { backends: [ { address: 1.2.3.4:5, weight: 99999999999999999999 } ] } }\nroutes: [{pool: p}]\n"))
	f.Add([]byte("routes: [{pool: p, match: {host: '*.x'}}]\npools: {p: {discovery: {dns: {name: a.b, port: 1}}}}\n"))
	f.Add([]byte("routes: [{pool: p}]\npools: {p: {backends: [{address: 1.2.3.4:5}]}}\nforwarding: {x_forwarded_for: replace, request_id: false}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse() returned a config with an error")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if _, err := Parse("again.yaml", c.Source); err != nil {
			t.Fatalf("accepted config fails on re-parse: %v", err)
		}
	})
}

// FuzzParseHashKey: hash_key strings never panic and round-trip.
func FuzzParseHashKey(f *testing.F) {
	for _, s := range []string{"", "source_ip", "header:X-User", "cookie:a", "query:", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHashKey(s)
		if err != nil {
			return
		}
		if (k.Kind == HashHeader || k.Kind == HashCookie || k.Kind == HashQuery) && k.Name == "" {
			t.Fatalf("ParseHashKey(%q) accepted an empty name", s)
		}
	})
}
