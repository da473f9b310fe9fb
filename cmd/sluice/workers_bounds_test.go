package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkersBounds: README.md:144, "-workers N ... 0, the
// default, is one process; at most 1024". Out of range is a usage error
// (exit 2) before the config is read; 1024 itself is taken (-check).
func TestWorkersBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte("routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: 127.0.0.1:9001}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give []string
		want int
	}{
		{"1025", []string{"-check", "-workers", "1025", "-config", path}, 2},
		{"negative", []string{"-check", "-workers", "-1", "-config", path}, 2},
		{"1024", []string{"-check", "-workers", "1024", "-config", path}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := run(context.Background(), tt.give, &out, &out); got != tt.want {
				t.Errorf("run(%v) = %d, want %d; output:\n%s", tt.give, got, tt.want, out.String())
			}
			if tt.want == 2 && !strings.Contains(out.String(), "-workers must be from 0 to 1024") {
				t.Errorf("output = %q, want it to name the range", out.String())
			}
		})
	}
}
