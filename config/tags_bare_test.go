package config

import (
	"errors"
	"strings"
	"testing"
)

// TestBareTagPlaces: YAML's non-specific tag "!" is refused wherever it
// stands (after an anchor, before one, on a mapping, under CRLF line
// ends, after non-ASCII text on its line), and a "!" that is not a tag
// (quoted, inside a value) is taken as text.
func TestBareTagPlaces(t *testing.T) {
	const head = "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:1}]\n    sticky:\n      cookie: sid\n"
	tests := []struct {
		name   string
		give   string
		line   int    // 0: no error
		secret string // with no error
	}{
		{"bare", head + "      secret: !\n", 7, ""},
		{"bare then text", head + "      secret: ! S3cret\n", 7, ""},
		{"verbatim non-specific", head + "      secret: !<!> S3cret\n", 7, ""},
		{"anchor then bare", head + "      secret: &s ! S3cret\n", 7, ""},
		{"bare then anchor", head + "      secret: ! &s S3cret\n", 7, ""},
		{"on a mapping", "routes: [{pool: web}]\npools: !\n  web:\n    backends: [{address: 127.0.0.1:1}]\n", 2, ""},
		{"crlf", strings.ReplaceAll(head+"      secret: ! S3cret\n", "\n", "\r\n"), 7, ""},
		{"after non-ascii comment line", "# café ünïcode\n" + head + "      secret: ! S3cret\n", 8, ""},
		{"non-ascii text before it on its line", "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:1}]\n    sticky: {cookie: \"séssïon\", secret: ! S3cret}\n", 5, ""},
		{"quoted", head + "      secret: \"!S3cret\"\n", 0, "!S3cret"},
		{"inside", head + "      secret: S3!cret\n", 0, "S3!cret"},
		{"standard tag", head + "      secret: !!str S3cret\n", 0, "S3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("s.yaml", []byte(tt.give))
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("Parse() error = %v, want none", err)
				}
				if got := c.Pools["web"].Sticky.Secret; got != tt.secret {
					t.Errorf("secret = %q, want %q", got, tt.secret)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse() error = %v, want a tag error at line %d", err, tt.line)
			}
			found := false
			for _, e := range es {
				found = found || e.Line == tt.line && strings.Contains(e.Msg, "a YAML tag")
			}
			if !found {
				t.Errorf("Parse() error = %v, want a tag error at line %d", err, tt.line)
			}
		})
	}
}
