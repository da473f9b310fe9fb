package proxy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sluice/accesslog"
	"sluice/config"
)

// TestAccessLogHostileValuesEndToEnd: client-chosen bytes that
// reach the access log through a real proxy (a percent-decoded path with
// LF, quote, backslash, ESC, C1 CSI, U+2028, invalid UTF-8 and NUL; an
// X-Request-Id with a quote, backslash, invalid UTF-8, U+2028 and C1; a
// Host the front refuses) each give one line of valid JSON, with nothing
// raw in the file that could end a line or drive a terminal, and the
// values read back as README (Access log) says: invalid bytes as U+FFFD,
// everything else as sent.
func TestAccessLogHostileValuesEndToEnd(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.New(config.AccessLog{Enabled: true, Path: path, Sample: 1}, nil, func() {})
	if err != nil {
		t.Fatal(err)
	}
	px.proxy.SetAccessLog(al)
	cases := []struct {
		raw         string
		status      int
		field, want string
	}{
		{"GET /a%22b%5c%0a%1b[31m%c2%9b%e2%80%a8%ff%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			200, "path", "/a\"b\\\n\x1b[31m\u009b\u2028\ufffd\x00"},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: \"},{\"status\":1,\"x\":\"\\\xff\xe2\x80\xa8\xc2\x9b\r\nConnection: close\r\n\r\n",
			200, "request_id", "\"},{\"status\":1,\"x\":\"\\\ufffd\u2028\u009b"},
		{"GET / HTTP/1.1\r\nHost: a\"b\r\nConnection: close\r\n\r\n", 400, "host", "a\"b"},
		{"GET /a\xffb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, "path", "/a\ufffdb"},
	}
	for _, c := range cases {
		if code := rawStatus(t, px.addr, c.raw); code != c.status {
			t.Fatalf("%q: status %d, want %d", c.raw, code, c.status)
		}
	}
	px.proxy.SetAccessLog(nil)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != len(cases) {
		t.Fatalf("%d lines, want %d: %q", n, len(cases), data)
	}
	for _, bad := range []string{"\x00", "\x1b", "\r", "\x7f", "\u009b", "\u2028", "\xff"} {
		if bytes.Contains(data, []byte(bad)) {
			t.Errorf("the log holds a raw %q: %q", bad, data)
		}
	}
	lines := accessLogLines(t, path)
	for i, c := range cases {
		if got := lines[i][c.field]; got != c.want {
			t.Errorf("line %d: %s = %q, want %q", i, c.field, got, c.want)
		}
		if lines[i]["status"] != float64(c.status) {
			t.Errorf("line %d: status %v, want %d", i, lines[i]["status"], c.status)
		}
	}
}
