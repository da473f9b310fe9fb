package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestForwardedAliasesDropped: a client field named as a forwarding header
// sluice sets, with underscores for hyphens (X_Forwarded_For), does not
// reach the backend, which may read it CGI-style as the real header; a
// header sluice passes as sent keeps its aliases, and other names with
// underscores pass.
func TestForwardedAliasesDropped(t *testing.T) {
	const spoof = "X_Forwarded_For: 6.6.6.6\r\nx_forwarded_proto: https\r\nX-Forwarded_Host: evil.example\r\nX_Custom_Id: 7\r\n"
	tests := []struct {
		name       string
		forwarding string
		kept       []string // fields of spoof the backend gets
		dropped    []string // fields of spoof it must not get
	}{
		{"defaults", "", []string{"X_Custom_Id: 7"},
			[]string{"6.6.6.6", "https", "evil.example"}},
		{"x_forwarded_for passed", "forwarding: { x_forwarded_for: pass }\n", []string{"6.6.6.6", "X_Custom_Id: 7"},
			[]string{"https", "evil.example"}},
		{"nothing set", "forwarding: { x_forwarded_for: pass, x_forwarded_proto: false, x_forwarded_host: false }\n",
			[]string{"6.6.6.6", "https", "evil.example", "X_Custom_Id: 7"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			px := startProxy(t, fmt.Sprintf("%sroutes: [{ pool: p }]\npools:\n  p: { backends: [{ address: %s }] }\n", tc.forwarding, b.ln.Addr()))
			if out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\n"+spoof+"Connection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200") {
				t.Fatalf("proxy answered %q", out)
			}
			// fasthttp writes names in its own case (X_custom_id).
			got := strings.ToLower(b.got())
			for _, s := range tc.kept {
				if !strings.Contains(got, strings.ToLower(s)) {
					t.Errorf("backend did not get %q:\n%s", s, got)
				}
			}
			for _, s := range tc.dropped {
				if strings.Contains(got, strings.ToLower(s)) {
					t.Errorf("backend got %q:\n%s", s, got)
				}
			}
		})
	}
}

func TestClassifyForwardedAlias(t *testing.T) {
	tests := []struct {
		name string
		want headerSet
	}{
		{"X-Forwarded-For", hXForwardedFor},
		{"X_Forwarded_For", hForwardedAlias},
		{"x_forwarded-for", hForwardedAlias},
		{"X-FORWARDED_PROTO", hForwardedAlias},
		{"X_Forwarded_Host", hForwardedAlias},
		{"X_Request_Id", 0}, // passed on by design; no alias to drop
		{"Accept_Language", 0},
		{"X_Forwarded_Fox", 0},
		{"X-Forwarded-Fo_", 0},
	}
	for _, tc := range tests {
		if got := classifyHeader([]byte(tc.name), []byte("v")); got != tc.want {
			t.Errorf("classifyHeader(%q) = %b, want %b", tc.name, got, tc.want)
		}
	}
}
