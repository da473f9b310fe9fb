package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: examples/upgrade.sh cannot wait for a new instance whose
// admin.listen has no host (":9902", every interface, a common spelling
// for an admin port scraped from another host; sluice serves it, with a
// warning). admin_of prints ":9902" as written and the script asks curl
// for "http://:9902/readyz", which curl refuses as a malformed URL
// (exit 3) without connecting: the wait loop runs out, the final check
// fails, and set -e ends the upgrade with both instances up, though the
// new one was ready all along. README ("Zero-downtime restart and
// shutdown") gives the script as the upgrade steps: "wait until the new
// one's /readyz is 200". Expected: an address without a host is reached
// on loopback (127.0.0.1:9902), as "0.0.0.0:9902" already is.
func TestUpgradeScriptWildcardAdmin(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	script, err := os.ReadFile("../../examples/upgrade.sh")
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?ms)^admin_of\(\) \{.*?^\}`).Find(script)
	// The script's last readiness check, the one set -e stops on.
	check := regexp.MustCompile(`(?m)^curl -fsS "http://\$\(admin_of "\$new"\)/readyz" >/dev/null$`).Find(script)
	if fn == nil || check == nil {
		t.Fatal("upgrade.sh has no admin_of function or no final /readyz check")
	}
	dir := t.TempDir()
	fn = []byte(strings.ReplaceAll(string(fn), "/etc/sluice/", dir+"/"))

	// The new instance's admin API, ready, on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, tt := range []struct{ name, admin string }{
		{"0.0.0.0", "0.0.0.0:" + port}, // passes: curl reaches loopback
		{"no host", ":" + port},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := "listen: 127.0.0.1:8080\nlisten_reuseport: true\nadmin:\n  listen: \"" + tt.admin + "\"\n"
			if err := os.WriteFile(filepath.Join(dir, "green.yaml"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail\n"+string(fn)+"\nnew=green\n"+string(check)).CombinedOutput()
			if err != nil {
				t.Errorf("upgrade.sh's /readyz check of a ready instance with admin.listen %q failed: %v\n%s", tt.admin, err, out)
			}
		})
	}
}
