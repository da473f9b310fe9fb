package admin

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// reviewRaw sends raw to addr and returns the answer's status, body and
// Content-Type.
func reviewRaw(t *testing.T, addr, raw string) (int, string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// TestOddBackendOpPaths: paths that are not exactly
// /admin/pools/{pool}/backends/{address}/{op} (dot segments, doubled
// slashes, an encoded slash in the operation, bad escapes, an
// absolute-form target, a query) are answered with a JSON error or act on
// exactly what they name, and never panic.
func TestOddBackendOpPaths(t *testing.T) {
	base, ctrl, _ := serveCounting(t)
	addr := strings.TrimPrefix(base, "http://")
	for _, tt := range []struct {
		target string
		want   int
		calls  int32 // controller changes it may make
	}{
		{"/admin/pools/web/backends/127.0.0.1:9001/x/../drain", 404, 0},
		{"/admin/pools//backends/127.0.0.1:9001/drain", 404, 0},
		{"/admin/pools/web/backends/127.0.0.1:9001/drain%2Fx", 404, 0},
		{"/admin/pools/web/backends/127.0.0.1:9001/%zz", 400, 0},
		{"/admin/pools/web/backends//drain", 404, 0},
		{"/admin/pools/web/nodes/127.0.0.1:9001/drain", 404, 0},
		{"/admin/pools/web/backends/127.0.0.1:9001/drain?force=1", 200, 1},
		{"http://" + addr + "/admin/pools/web/backends/127.0.0.1:9001/drain", 200, 1},
		{"/admin/pools/web%2Fv1/backends/127.0.0.1%3A9001/drain", 200, 1},
	} {
		before := ctrl.calls.Load()
		code, body, ct := reviewRaw(t, addr, "POST "+tt.target+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		var v map[string]any
		if code != tt.want || ct != "application/json" || json.Unmarshal([]byte(body), &v) != nil {
			t.Errorf("POST %s = %d %s %q, want %d as JSON", tt.target, code, ct, body, tt.want)
		}
		if n := ctrl.calls.Load() - before; n != tt.calls {
			t.Errorf("POST %s: %d controller changes, want %d", tt.target, n, tt.calls)
		}
	}
}
