package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestWarnNoMigrate: with listen_reuseport, sluice warns when the kernel
// would reset the connections queued on a listener that closes.
func TestWarnNoMigrate(t *testing.T) {
	tests := []struct {
		name     string
		content  *string // nil: no such file
		wantWarn string
	}{
		{"off", ptr("0\n"), "tcp_migrate_req is 0"},
		{"on", ptr("1\n"), ""},
		{"old kernel", nil, "Linux 5.14+"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tcp_migrate_req")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			warnNoMigrate(zerolog.New(&buf), path)
			got := buf.String()
			if tt.wantWarn == "" && got != "" {
				t.Errorf("logged %q, want nothing", got)
			}
			if tt.wantWarn != "" && !strings.Contains(got, tt.wantWarn) {
				t.Errorf("logged %q, want a warning with %q", got, tt.wantWarn)
			}
		})
	}
}

func ptr(s string) *string { return &s }
