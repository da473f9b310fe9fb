package config

import (
	"testing"
)

// Found by review. What was wrong: an integer written with a leading zero is read as octal, silently:
// `weight: 010` gives the backend weight 8 and `max_conns_per_backend:
// 0100` allows 64, while `weight: 08` and `09` are refused ("want an
// integer, got "08""). yaml.v3 keeps YAML 1.1's octal for plain scalars
// ("decode as 0777 per YAML 1.1 too"), and decode.go scalar() passes
// every integer node to n.Decode, checking only for a !!float tag. YAML
// 1.2's core schema (the one yaml.v3 otherwise follows: yes/no are
// strings there, 0o17 is its octal) reads 010 as the decimal 10. README
// (Configuration reference) promises that wrong types and invalid values
// are errors and refuses the one other silent YAML reading of an integer,
// `weight: 0.9` cut to 0, "as YAML decoders do". Expected: 010 refused as
// an ambiguous integer (or read as 10), never as 8; e.g. in scalar(),
// refuse a plain !!int scalar that matches [-+]?0[0-9]+.
func TestLeadingZeroIntegerNotOctal(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte("routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001, weight: 010}]\n"+
		"limits: {max_conns_per_backend: 0100}\n"))
	if err != nil {
		return // refused: right
	}
	if w := c.Pools["web"].Backends[0].Weight; w != 10 {
		t.Errorf("weight: 010 accepted as %d, want an error (or 10)", w)
	}
	if n := c.Limits.MaxConnsPerBackend; n != 100 {
		t.Errorf("max_conns_per_backend: 0100 accepted as %d, want an error (or 100)", n)
	}
}
