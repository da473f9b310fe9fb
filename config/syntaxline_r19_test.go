package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: a YAML scanner error whose message starts "did not find expected "
// is named one line after the mistake. README.md (Configuration reference,
// line 217) says a syntax error names "the line of the mistake, or for some
// mistakes the first line of the block or flow collection it breaks".
// syntaxErrorLine (config.go) adds 1 to every message that starts with
// "did not find expected ", taking them all for parser errors, which
// yaml.v3 counts from 0; but its scanner (scannerc.go) uses the same words
// ("did not find expected alphabetic or numeric character", "... comment
// or line break", "... hexdecimal number", "... whitespace or line break",
// "... '!'", "... tag URI"), and yaml.v3 already counts scanner errors from
// 1. The commonest case is a wildcard host written unquoted, `host:
// *.example.com` (YAML reads `*` as an alias): sluice names the line below
// it, which holds nothing wrong (`pool: web` in a route).
func TestScannerErrorLine(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
	}{
		{"unquoted wildcard host in a block", "listen: 127.0.0.1:8080\nroutes:\n  - match:\n      host: *.example.com\n    pool: web\n", 4},
		{"unquoted wildcard host in a flow map", "listen: 127.0.0.1:8080\nroutes:\n  - match: { host: *.example.com }\n    pool: web\n", 3},
		{"anchor without a name", "listen: 127.0.0.1:8080\nretries: & x\nlog: {}\n", 2},
		{"junk after a block scalar indicator", "listen: 127.0.0.1:8080\nlog:\n  level: |x\n    info\nretries: {}\n", 3},
		{"bad escape in a double-quoted string", "listen: 127.0.0.1:8080\nadmin:\n  listen: \"\\xZZ\"\nretries: {}\n", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(tt.text))
			errs, ok := err.(Errors)
			if !ok || len(errs) != 1 || !strings.Contains(errs[0].Msg, "invalid YAML: did not find expected") {
				t.Fatalf("got %v, want one \"invalid YAML: did not find expected ...\" error", err)
			}
			if errs[0].Line != tt.line {
				t.Errorf("line %d (%v), want %d, the line of the mistake", errs[0].Line, errs[0], tt.line)
			}
		})
	}
}
