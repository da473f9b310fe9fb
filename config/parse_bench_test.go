package config

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParseLongFlowLine parses a config written on one flow line of
// 20,000 backends (60,000 nodes, 540 KB). Looking for YAML's bare tag at
// each node from its line's start made such a file quadratic (session 25:
// 1.6 MB took 2 minutes); bareTag goes on from the last node it looked at.
func BenchmarkParseLongFlowLine(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("routes: [{pool: web}]\npools: {web: {backends: [")
	for i := range 20000 {
		fmt.Fprintf(&sb, "{address: 10.%d.%d.%d:80}, ", i/65536, i/256%256, i%256)
	}
	sb.WriteString("]}}\n")
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("long.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
