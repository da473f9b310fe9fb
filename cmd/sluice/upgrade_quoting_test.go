package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestUpgradeScriptAdminQuoting: admin_of reads a single-quoted
// admin.listen and a CRLF file. Its first version (a6991c5) stripped a
// double quote around admin.listen but not a single one, and kept the
// '\r' of a CRLF file in block style. YAML reads a single-quoted
// address and a CRLF file as the plain address, and so
// does sluice -check, which the script runs first; admin_of then prints
// "'127.0.0.1:9911'" or "127.0.0.1:9911\r", curl gets a URL it cannot
// use ("http://'127.0.0.1:9911'/readyz"), the wait loop runs out its 100
// tries, and the script stops under set -e with the new instance started
// and the old one still running: the upgrade fails. Same result with
// mawk (Debian's default awk), gawk, busybox awk and original-awk.
func TestUpgradeScriptAdminQuoting(t *testing.T) {
	script, err := os.ReadFile("../../examples/upgrade.sh")
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?ms)^admin_of\(\) \{.*?^\}`).Find(script)
	if fn == nil {
		t.Fatal("no admin_of function in upgrade.sh")
	}
	dir := t.TempDir()
	fn = []byte(strings.ReplaceAll(string(fn), "/etc/sluice/", dir+"/"))
	tests := []struct{ name, config, want string }{
		{"flow, single quotes", "listen: 127.0.0.1:8080\nadmin: { listen: '127.0.0.1:9912' }\n", "127.0.0.1:9912"},
		{"block, single quotes", "listen: 127.0.0.1:8080\nadmin:\n  listen: '127.0.0.1:9911'\n", "127.0.0.1:9911"},
		{"block, CRLF", "listen: 127.0.0.1:8080\r\nadmin:\r\n  listen: 127.0.0.1:9911\r\n", "127.0.0.1:9911"},
		{"IPv6, single quotes", "admin: { listen: '[::1]:9913' }\n", "[::1]:9913"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "blue.yaml"), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "bash", "-c", string(fn)+"\nadmin_of blue").Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(string(out), "\n"); got != tt.want {
				t.Errorf("admin_of = %q, want %q", got, tt.want)
			}
		})
	}
}
