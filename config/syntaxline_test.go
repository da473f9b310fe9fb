package config

import (
	"strings"
	"testing"
)

// TestSyntaxErrorLine: a YAML syntax error names the line of the mistake,
// or of the construct it breaks where that is what yaml.v3 marks. yaml.v3
// counts a parser error's line from 0, so these were reported one line
// above it (found by review); scanner errors were right and stay so.
func TestSyntaxErrorLine(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
	}{
		{"junk after a quoted value", "a: 1\nb: 2\nc: 3\nd: \"x\" y\n", 4},
		{"two quoted strings in a flow map", "routes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\nadmin: { listen: \"x\"\"\" }\n", 3},
		{"key outdented in a block", "routes: [{pool: web}]\nretries:\n  attempts: 2\n bad: 3\n", 4},
		// yaml.v3 names the list the key breaks (its first item), the
		// line above: sluice claims no later line than that.
		{"key at the sequence's indent", "pools: {web: {backends: [{address: 127.0.0.1:9001}]}}\nroutes:\n  - pool: web\n  match: {}\n", 3},
		{"tab indentation (a scanner error)", "routes: [{pool: web}]\npools:\n\tweb:\n    backends: [{address: 127.0.0.1:9001}]\n", 3},
		{"unclosed quote (a scanner error)", "routes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\nlisten: \"127.0.0.1:8080\n", 3},
		{"error on the first line", "a: b: c\n", 1},
		{"no newline at the end", "a: 1\nb: \"x\" y", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("sluice.yaml", []byte(tt.text))
			errs, ok := err.(Errors)
			if !ok || len(errs) != 1 || !strings.Contains(errs[0].Msg, "invalid YAML") {
				t.Fatalf("got %v, want one invalid YAML error", err)
			}
			if errs[0].Line != tt.line {
				t.Errorf("line %d (%v), want %d", errs[0].Line, errs[0], tt.line)
			}
		})
	}
}
