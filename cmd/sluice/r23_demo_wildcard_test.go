package main

import (
	"bufio"
	"context"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: `sluice demo -listen :8080` (every interface: the natural
// spelling in a container, or to try the demo from another machine)
// serves, but its banner says "try: curl -s http://:8080/", a URL with
// no host, which curl refuses as malformed (exit 3) and, with -s,
// without a word; so do the /api/hello line and, for `-admin :9901`,
// the admin one. README: the demo "prints what to try once it serves".
// runDemo's banner (demo.go:84-95) pastes -listen and -admin as given.
// Expected: an address without a host printed with a loopback host
// (http://127.0.0.1:8080/), as one can reach it. The demo binds every
// interface here, so the test runs it in a network namespace of its own
// (unshare -n, as root), where nothing outside can reach it.
func TestDemoBannerWildcardListen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for unshare -n")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("no " + tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", `ip link set lo up && exec "$0" demo -listen :18080 -admin :19901`, binary)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var banner []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		banner = append(banner, sc.Text())
		if strings.Contains(sc.Text(), "Ctrl-C") {
			break
		}
	}
	if len(banner) == 0 || !strings.Contains(banner[len(banner)-1], "Ctrl-C") {
		t.Skipf("the demo did not serve in a network namespace of its own (banner %q)\n%s", banner, stderr)
	}
	urls := regexp.MustCompile(`curl -s (\S+)`).FindAllStringSubmatch(strings.Join(banner, "\n"), -1)
	if len(urls) != 3 {
		t.Fatalf("banner has %d curl lines, want 3:\n%s", len(urls), strings.Join(banner, "\n"))
	}
	for _, m := range urls {
		u, err := url.Parse(m[1])
		if err != nil || u.Hostname() == "" {
			t.Errorf("banner says to try %q: no host to connect to (curl: \"URL using bad/illegal format\")", m[1])
		}
	}
}

// TestReachable: the banner's addresses, as a client on this host dials
// them (the namespace test above needs root; this one runs everywhere).
func TestReachable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "[::1]:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"[::1]:8080", "[::1]:8080"},
		{"localhost:8080", "localhost:8080"},
		{"not an address", "not an address"},
	} {
		if got := reachable(tc.in); got != tc.want {
			t.Errorf("reachable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
