package proxy

import (
	"strings"
	"testing"
)

// TestLongResponseHeads: a backend response head is read whole in the
// upstream read buffer, so its size bounds a head (upstreamReadBufferSize,
// 16 KiB as HAProxy's tune.bufsize; nginx's proxy_buffer_size is 4-8 KiB).
// A head within it passes with its fields; a longer one gets 502, not a
// hang or a cut head.
func TestLongResponseHeads(t *testing.T) {
	tests := []struct {
		name       string
		fieldBytes int
		want       string
	}{
		{"short head", 100, "HTTP/1.1 200"},
		{"head of three quarters of the buffer", upstreamReadBufferSize * 3 / 4, "HTTP/1.1 200"},
		{"head longer than the buffer", upstreamReadBufferSize + 1024, "HTTP/1.1 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			big := strings.Repeat("v", tt.fieldBytes)
			b := startRawBackend(t, "HTTP/1.1 200 OK\r\nX-Big: "+big+"\r\nContent-Length: 2\r\n\r\nok")
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, tt.want) {
				t.Fatalf("proxy answered %.200q, want %q", out, tt.want)
			}
			if tt.want == "HTTP/1.1 200" && (!strings.Contains(out, "X-Big: "+big+"\r\n") || !strings.HasSuffix(out, "\r\n\r\nok")) {
				t.Fatalf("the head or body did not pass whole: %d bytes, ends %q", len(out), out[max(0, len(out)-20):])
			}
		})
	}
}
