package proxy

import (
	"strings"
	"testing"
)

// TestHostEmptyLabelRefused: a Host (or an absolute-form target's host)
// with an empty label is no DNS name; routed, it took the no-host route.
// nginx answers 400, and so does sluice. One trailing dot (a rooted
// name) and IP literals stay valid.
func TestHostEmptyLabelRefused(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	tests := []struct {
		name, target, host string
		refused            bool
	}{
		{"inner empty label", "/x", "api..example.com", true},
		{"two trailing dots", "/x", "api.example.com..", true},
		{"two dots before port", "/x", "api.example.com..:80", true},
		{"only dots", "/x", "..", true},
		{"absolute form inner", "http://api..example.com/x", "x", true},
		{"absolute form trailing", "http://example.com../x", "x", true},
		{"rooted name", "/x", "api.example.com.", false},
		{"rooted with port", "/x", "api.example.com.:8080", false},
		{"ipv4", "/x", "127.0.0.1:80", false},
		{"ipv6", "/x", "[::ffff:127.0.0.1]:80", false},
		{"absolute form rooted", "http://example.com./x", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.mu.Lock()
			b.last = ""
			b.mu.Unlock()
			out := rawWire(t, px.addr, "GET "+tt.target+" HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
			got := b.got()
			if tt.refused {
				if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
					t.Errorf("answered %.40q, want 400", out)
				}
				if got != "" {
					t.Errorf("backend got %q", got)
				}
				return
			}
			if !strings.HasPrefix(out, "HTTP/1.1 200 ") || got == "" {
				t.Errorf("answered %.40q (backend got %d bytes), want it forwarded", out, len(got))
			}
		})
	}
}

// TestConnect405NamesAllow: RFC 9110 §15.5.6 asks a 405 to carry Allow.
func TestConnect405NamesAllow(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	out := rawWire(t, px.addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 405 ") {
		t.Fatalf("answered %.40q, want 405", out)
	}
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.Contains(head, "\r\nAllow: "+allowedMethods+"\r\n") {
		t.Errorf("405 head %q has no Allow: %s", head, allowedMethods)
	}
	if strings.Contains(strings.SplitN(head, "Allow:", 2)[1], "CONNECT") {
		t.Errorf("Allow names CONNECT: %q", head)
	}
	if got := b.got(); got != "" {
		t.Errorf("backend got %q", got)
	}
}
