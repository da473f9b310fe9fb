package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBadReloadKeepsRunningConfig: each kind of invalid file
// (YAML syntax, a tab, an unknown key at depth, a wrong type, a value out
// of range, a key defined twice, a second document, a BOM with CRLF line
// ends, an empty file, a file of only comments) is refused by POST
// /admin/reload with 400 and an error naming the file, the line and the
// field, shown as last_reload_error; the proxy keeps routing by the running
// config, and a valid file afterwards is applied.
func TestBadReloadKeepsRunningConfig(t *testing.T) {
	up1 := startElasticBackend(t, "127.0.0.1:0")
	up2 := startElasticBackend(t, "127.0.0.1:0")
	listen, admin := freePort(t), freePort(t)
	head := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nwatch_config: false\nlog: {level: error}\n", listen, admin) // lines 1-4
	good := func(up string) string {
		return head + "routes: [{pool: p}]\npools:\n  p:\n    backends:\n      - address: " + up + "\n" // lines 5-9
	}
	path := writeConfig(t, good(up1.addr))
	runInProcess(t, path)
	waitReady(t, "http://"+admin+"/readyz")
	servedBy := func() string {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := servedBy(); got != up1.addr {
		t.Fatalf("served by %q, want %s", got, up1.addr)
	}
	pool := "routes: [{pool: p}]\npools:\n  p:\n    backends:\n" // lines 5-8
	for _, tc := range []struct{ name, text, want string }{
		{"syntax", head + pool + "      - address: " + up2.addr + "\n     weight: 2\n", ":8: invalid YAML"}, // the block it breaks (README)
		{"tab indentation", head + pool + "\t- address: " + up2.addr + "\n", ":9: invalid YAML"},
		{"unknown key at depth", head + pool + "      - address: " + up2.addr + "\n        wieght: 2\n", ":10: pools.p.backends[0].wieght: unknown field"},
		{"wrong type", head + pool + "      - address: " + up2.addr + "\ntimeouts: {idle: 5}\n", ":10: timeouts.idle: want a duration"},
		{"out of range", head + pool + "      - address: " + up2.addr + "\nretries:\n  attempts: 11\n", ":11: retries.attempts: must be from 1 to 10"},
		{"negative", head + pool + "      - {address: " + up2.addr + ", weight: -1}\n", ":9: pools.p.backends[0].weight: must be >= 0"},
		{"defined twice", head + pool + "      - address: " + up2.addr + "\nlisten: " + listen + "\n", ":10: listen: defined twice"},
		{"unknown pool", head + "routes: [{pool: q}]\npools:\n  p:\n    backends:\n      - address: " + up2.addr + "\n", ":5: routes[0].pool: unknown pool"},
		{"second document", head + pool + "      - address: " + up2.addr + "\n---\nlisten: x\n", ":10: a second YAML document"},
		{"BOM and CRLF", strings.ReplaceAll("\ufeff"+head+pool+"      - address: "+up2.addr+"\n    bogus: 1\n", "\n", "\r\n"), ":10: pools.p.bogus: unknown field"},
		{"empty file", "", ": empty config file"},
		{"only comments", "# nothing\n# here\n", ": empty config file"},
	} {
		replaceFile(t, path, tc.text)
		code, body := adminReload(t, admin)
		if code != 400 || !strings.Contains(body, path+tc.want) {
			t.Errorf("%s: POST /admin/reload = %d %s\nwant 400 with %q", tc.name, code, strings.TrimSpace(body), path+tc.want)
		}
		if cfg := getBody(t, "http://"+admin+"/admin/config"); !strings.Contains(grepLines(cfg, `"error": `), tc.want) ||
			!regexp.MustCompile(`"generation": ?1,`).MatchString(cfg) {
			t.Errorf("%s: /admin/config does not keep generation 1 with the error as last_reload_error:\n%s\n%s", tc.name,
				grepLines(cfg, "generation"), grepLines(cfg, `"error": `))
		}
		if got := servedBy(); got != up1.addr {
			t.Errorf("%s: after the rejected reload served by %q, want %s (the running config)", tc.name, got, up1.addr)
		}
	}
	replaceFile(t, path, good(up2.addr))
	if code, body := adminReload(t, admin); code != 200 {
		t.Fatalf("valid reload = %d %s", code, body)
	}
	if got := servedBy(); got != up2.addr {
		t.Errorf("after a valid reload served by %q, want %s", got, up2.addr)
	}
}
