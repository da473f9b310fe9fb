package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestAdminReviewAllowHeader: every 405 names the allowed methods in
// Allow (RFC 9110 §15.5.6), and a wrong method changes nothing. The
// GET endpoints answer HEAD too, so their Allow lists it (RFC 9110
// §10.2.1: the methods the resource supports; found by review: it said
// "GET").
func TestAdminReviewAllowHeader(t *testing.T) {
	base, ctrl, reloads := serveCounting(t)
	for _, tt := range []struct {
		method, path string
		want         []string
	}{
		{"GET", "/admin/reload", []string{"POST"}},
		{"PUT", "/admin/pools/web/backends/127.0.0.1:9001/drain", []string{"POST"}},
		{"GET", "/admin/pools/web/backends/127.0.0.1:9001/undrain", []string{"POST"}},
		{"POST", "/admin/pools/web/backends/127.0.0.1:9001/weight", []string{"PUT"}},
		{"POST", "/admin/pools", []string{"GET", "HEAD"}},
		{"DELETE", "/admin/config", []string{"GET", "HEAD"}},
		{"POST", "/healthz", []string{"GET", "HEAD"}},
		{"PUT", "/readyz", []string{"GET", "HEAD"}},
	} {
		req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader("5"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		allow := resp.Header.Get("Allow")
		ok := resp.StatusCode == 405
		for _, m := range tt.want {
			ok = ok && strings.Contains(allow, m)
		}
		if !ok {
			t.Errorf("%s %s = %d, Allow %q; want 405 with Allow listing %v", tt.method, tt.path, resp.StatusCode, allow, tt.want)
		}
	}
	if n, r := ctrl.calls.Load(), reloads.Load(); n != 0 || r != 0 {
		t.Errorf("after wrong methods: %d controller changes, %d reloads; want none", n, r)
	}
}
