package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestDrainCornerBackendOpCodes checks codes and Allow headers of the
// drain/undrain/weight endpoints against a real controller.
func TestDrainCornerBackendOpCodes(t *testing.T) {
	base, ctrl := startAdmin(t)
	b1 := base + "/admin/pools/web/backends/127.0.0.1:9001"
	cases := []struct {
		method, url, body string
		code              int
		allow             string
	}{
		{"GET", b1 + "/drain", "", 405, "POST"},
		{"PUT", b1 + "/undrain", "", 405, "POST"},
		{"POST", b1 + "/weight", "3", 405, "PUT"},
		{"DELETE", base + "/admin/pools", "", 405, "GET, HEAD"},
		{"GET", base + "/admin/reload", "", 405, "POST"},
		{"POST", base + "/admin/pools/web/backends/127.0.0.1:1/drain", "", 404, ""},
		{"POST", base + "/admin/pools/nope/backends/127.0.0.1:9001/drain", "", 404, ""},
		{"PUT", base + "/admin/pools/web/backends/127.0.0.1:1/weight", "3", 404, ""},
		{"PUT", b1 + "/weight", "", 400, ""},
		{"PUT", b1 + "/weight", "1000001", 400, ""},
		{"POST", b1 + "/drain", "", 200, ""},
		{"POST", b1 + "/drain", "", 200, ""},
		{"POST", b1 + "/undrain", "", 200, ""},
		{"POST", b1 + "/undrain", "", 200, ""},
		{"POST", b1 + "/bogus", "", 404, ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", c.method, c.url, resp.StatusCode, resp.Header.Get("Allow"), c.code, c.allow)
		}
		if ct := resp.Header.Get("Content-Type"); c.code != 200 && ct != "application/json" {
			t.Errorf("%s %s: content type %q", c.method, c.url, ct)
		}
	}
	if adminDrained(t, ctrl, "127.0.0.1:9001") {
		t.Error("still drained after undrain")
	}
}
