package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Found by review. What was wrong: dropForwardedAliases called DelBytes,
// a pass over all the request's fields, once for every line that aliases
// a forwarding header (X_Forwarded_For and the like), so a large head of
// many fields and many alias lines cost time quadratic in its size: with
// limits.max_header_bytes at 1 MiB, 29,000 alias lines beside 130,000
// fields kept a core busy for about 9.5 s (87 ms with another name). It
// is the quadratic that capped Connection names at 32 (TestHopNamesCapped).
// Each alias name is now deleted once, with all its lines;
// BenchmarkDropForwardedAliases measures the cost (no timing bound here).
// This test checks that such a head is still answered and that no alias,
// in any of its spellings, reaches the backend.
func TestForwardedAliasLinesDropped(t *testing.T) {
	be := startSmuggleBackend(t)
	px := startProxy(t, fmt.Sprintf("limits:\n  max_header_bytes: 1048576\nroutes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: %s }\n", be.ln.Addr()))
	var head strings.Builder
	head.WriteString("GET /alias HTTP/1.1\r\nHost: x\r\n")
	for i := range 3000 {
		head.WriteString("a:\r\n")
		head.WriteString([]string{"X_Forwarded_For", "x_forwarded-for", "X-FORWARDED_FOR", "X_Forwarded_Proto", "x_forwarded_host"}[i%5])
		head.WriteString(": 10.0.0.1\r\n")
	}
	head.WriteString("X_Forwarded_Fox: kept\r\n\r\n")
	c, br := dialProxy(t, px.addr)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, head.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	raw, _ := be.snapshot()
	low := strings.ToLower(raw)
	for _, alias := range []string{"x_forwarded_for", "x_forwarded-for", "x-forwarded_for", "x_forwarded_proto", "x_forwarded_host"} {
		if strings.Contains(low, alias+":") {
			t.Errorf("a %s field reached the backend", alias)
		}
	}
	if !strings.Contains(low, "x_forwarded_fox: kept") {
		t.Errorf("the field that is no alias (X_Forwarded_Fox) did not reach the backend")
	}
}

// BenchmarkDropForwardedAliases: a head of 6,000 fields, half of them
// alias lines. Before each name was deleted once this took time
// quadratic in the head (a pass over the fields per alias line).
func BenchmarkDropForwardedAliases(b *testing.B) {
	var raw bytes.Buffer
	raw.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	for range 3000 {
		raw.WriteString("a: 1\r\nX_Forwarded_For: 10.0.0.1\r\n")
	}
	raw.WriteString("\r\n")
	var h fasthttp.RequestHeader
	fw := forwarding{xff: xffAppend, proto: true, host: true}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h.Reset()
		if err := h.Read(bufio.NewReaderSize(bytes.NewReader(raw.Bytes()), raw.Len()+1)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		dropForwardedAliases(&h, h.RawHeaders(), fw)
	}
}
