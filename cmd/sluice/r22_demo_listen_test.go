package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// freeIPv6Loopback is a free port on [::1], or "" where the host has no
// IPv6 loopback.
func freeIPv6Loopback(t *testing.T) string {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return ""
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Found by review. What was wrong: `sluice demo` pasted -listen and
// -admin unquoted into its embedded YAML (demo.yaml "listen: ${LISTEN}"),
// so an IPv6 address, which YAML needs quoted, was read as the start of a
// list (exit 1: `demo.yaml (embedded):3: invalid YAML`), and `-admin ""`
// became `listen:` with no value, which keeps the default 127.0.0.1:9901
// instead of turning the admin API off as `admin.listen: ""` does.
func TestDemoServesAnyListenFlags(t *testing.T) {
	v6 := freeIPv6Loopback(t)
	for _, tt := range []struct {
		name, listen, admin string
	}{
		{"IPv6 listen", v6, freePort(t)},
		{"admin off", freePort(t), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.listen == "" {
				t.Skip("no IPv6 loopback on this host")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &syncBuffer{}
			exit := make(chan int, 1)
			go func() { exit <- run(ctx, []string{"demo", "-listen", tt.listen, "-admin", tt.admin}, out, out) }()
			c := &http.Client{Timeout: time.Second}
			served := false
			for deadline := time.Now().Add(5 * time.Second); !served && time.Now().Before(deadline); {
				select {
				case code := <-exit:
					t.Fatalf("sluice demo -listen %s -admin %q exited %d, want it to serve:\n%s", tt.listen, tt.admin, code, out.String())
				default:
				}
				if resp, err := c.Get("http://" + tt.listen + "/"); err == nil {
					resp.Body.Close()
					served = resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("X-Backend"), "demo-")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !served {
				t.Fatalf("sluice demo -listen %s: no demo answer on it\n%s", tt.listen, out.String())
			}
			if tt.admin != "" {
				// Its config is built in: a reload says so (found by
				// review: "config: open : no such file or directory",
				// counted as a failed reload).
				resp, err := c.Post("http://"+tt.admin+"/admin/reload", "", nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 503 || !strings.Contains(string(body), "no config file to reload") {
					t.Errorf("POST /admin/reload on the demo = %d %s, want 503 saying there is no config file", resp.StatusCode, body)
				}
			}
			if tt.admin == "" {
				if strings.Contains(out.String(), "/admin/pools") {
					t.Errorf("banner offers the admin API it turned off:\n%s", out.String())
				}
				// The default admin address must not be this demo's:
				// another process may hold it, so only an answer naming
				// this demo's listen address fails the test.
				if resp, err := c.Get("http://127.0.0.1:9901/admin/config"); err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if strings.Contains(string(body), tt.listen) {
						t.Errorf("-admin \"\" served the admin API on the default 127.0.0.1:9901")
					}
				}
			}
			cancel()
			select {
			case code := <-exit:
				if code != 0 {
					t.Errorf("demo exit = %d, want 0", code)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("demo did not stop")
			}
		})
	}
}

// Found by review. What was wrong: the demo printed its "try: curl ..."
// banner before binding, so a taken port got the banner and then the
// error, about a file the user never wrote. The banner now comes once the
// listeners are up, and a failure says which flags choose other addresses.
func TestDemoPortTakenNoBanner(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, []string{"demo", "-listen", taken.Addr().String(), "-admin", freePort(t)}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d with the port taken, want 1", code)
	}
	if strings.Contains(stdout.String(), "try:") {
		t.Errorf("banner printed though nothing was served:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "-listen ADDR") {
		t.Errorf("stderr does not say how to choose another address:\n%s", stderr.String())
	}
}
