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

// TestUpgradeScriptFindsAdmin: examples/upgrade.sh waits for the new
// instance's /readyz on its admin listener. Its admin_of took the last
// "listen: 127.0.0.1:N" line of the file, which is the proxy's listen
// when admin is written in flow style or left at its default (found by
// review): the script then polled the proxy, whose backend could answer
// 200 before the new instance was ready.
func TestUpgradeScriptFindsAdmin(t *testing.T) {
	script, err := os.ReadFile("../../examples/upgrade.sh")
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?ms)^admin_of\(\) \{.*?^\}`).Find(script)
	if fn == nil {
		t.Fatal("no admin_of function in upgrade.sh")
	}
	// Read the configs from the test's directory, not /etc/sluice.
	dir := t.TempDir()
	fn = []byte(strings.ReplaceAll(string(fn), "/etc/sluice/", dir+"/"))
	tests := []struct{ name, config, want string }{
		{"block", "listen: 127.0.0.1:8080\nadmin:\n  listen: 127.0.0.1:9911\npools: {}\n", "127.0.0.1:9911"},
		{"flow", "listen: 127.0.0.1:8080\nadmin: { listen: \"127.0.0.1:9912\" }\n", "127.0.0.1:9912"},
		{"default", "listen: 127.0.0.1:8080\npools:\n  web:\n    backends: []\n", "127.0.0.1:9901"},
		{"admin first, comments", "admin:\n  # listen: 1.2.3.4:1\n  listen: 127.0.0.1:9913 # x\nlisten: 127.0.0.1:8080\n", "127.0.0.1:9913"},
		// Quoting and line ends the first admin_of (a6991c5) got wrong
		// (found by review): it stripped double quotes only and kept a
		// CRLF file's '\r', so curl got an unusable URL, the wait ran
		// out and set -e stopped the upgrade with both instances up.
		// mawk (Debian's default awk), gawk and busybox awk agree.
		{"flow, single quotes", "listen: 127.0.0.1:8080\nadmin: { listen: '127.0.0.1:9912' }\n", "127.0.0.1:9912"},
		{"block, single quotes", "listen: 127.0.0.1:8080\nadmin:\n  listen: '127.0.0.1:9911'\n", "127.0.0.1:9911"},
		{"block, CRLF", "listen: 127.0.0.1:8080\r\nadmin:\r\n  listen: 127.0.0.1:9911\r\n", "127.0.0.1:9911"},
		{"IPv6, single quotes", "admin: { listen: '[::1]:9913' }\n", "[::1]:9913"},
		// Quoted keys, which YAML and -check take, were read as the
		// default (found by review in session 24).
		{"quoted keys, block", "listen: 127.0.0.1:8080\n\"admin\":\n  \"listen\": 127.0.0.1:9908\n", "127.0.0.1:9908"},
		{"quoted inner key", "admin:\n  'listen': '127.0.0.1:9910'\n", "127.0.0.1:9910"},
		{"quoted keys, flow", "admin: {\"listen\": 127.0.0.1:9909}\n", "127.0.0.1:9909"},
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
			if got := strings.TrimSuffix(string(out), "\n"); got != tt.want { // a '\r' left is wrong
				t.Errorf("admin_of = %q, want %q", got, tt.want)
			}
		})
	}
}
