package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUpstreamStatusOutOfRange: a final status outside 100–599 gets the
// client a 502 (fasthttp would pass 000 on as 200, and 099 with its body
// but no Content-Length, which put the client's next answer out of step),
// however the backend gets there (empty lines first, interim answers in
// bare LFs, with two spaces, many of them); the client's connection goes
// on in step, and the codes at the edges of the range pass.
func TestUpstreamStatusOutOfRange(t *testing.T) {
	const final = " X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
	for _, tt := range []struct {
		name, raw string
		want      int
	}{
		{"000", "HTTP/1.1 000" + final, http.StatusBadGateway},
		{"099", "HTTP/1.1 099" + final, http.StatusBadGateway},
		{"050", "HTTP/1.1 050" + final, http.StatusBadGateway},
		{"600", "HTTP/1.1 600" + final, http.StatusBadGateway},
		{"999", "HTTP/1.1 999" + final, http.StatusBadGateway},
		{"000 after an empty line", "\r\nHTTP/1.1 000" + final, http.StatusBadGateway},
		{"099 after a bare-LF 100", "HTTP/1.1 100 Continue\n\nHTTP/1.1 099" + final, http.StatusBadGateway},
		{"000 after a 100 with two spaces", "HTTP/1.1  100 Continue\r\n\r\nHTTP/1.1 000" + final, http.StatusBadGateway},
		{"099 after nine 102s", strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 9) + "HTTP/1.1 099" + final, http.StatusBadGateway},
		{"200", "HTTP/1.1 200" + final, http.StatusOK},
		{"599", "HTTP/1.1 599" + final, 599},
		{"200 after a bare-LF 100", "HTTP/1.1 100 Continue\n\nHTTP/1.1 200" + final, http.StatusOK},
		{"200 with two spaces", "HTTP/1.1  200" + final, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, tt.raw)
			px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
			c, br := dialProxy(t, px.addr)
			if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want || resp.ContentLength != int64(len(body)) {
					t.Fatalf("answer %d: %d, Content-Length %d, body %q; want %d framed", i+1, resp.StatusCode, resp.ContentLength, body, tt.want)
				}
				if tt.want == http.StatusBadGateway && !strings.Contains(string(body), "invalid status code") {
					t.Errorf("answer %d: body %q does not say why", i+1, body)
				}
			}
		})
	}
}

// TestHTTP10BackendAnswersAsHTTP11: an HTTP/1.0 backend's answer goes to
// the client as HTTP/1.1, sluice's own version, and the connection stays
// open for the next request.
func TestHTTP10BackendAnswersAsHTTP11(t *testing.T) {
	b := startRawBackend(t, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
	px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
	c, br := dialProxy(t, px.addr)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/1.1" || resp.Close || resp.StatusCode != http.StatusOK {
			t.Fatalf("answer %d: %s %d, close %v; want HTTP/1.1 200 kept open", i+1, resp.Proto, resp.StatusCode, resp.Close)
		}
	}
}

// TestExpectRefusedAtOnce: a request with Expect: 100-continue that sluice
// would refuse whatever its body is refused at once, not asked for its
// body first (100 Continue), and never reaches the backend.
func TestExpectRefusedAtOnce(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, "timeouts: { client_read: 30s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	for _, tt := range []struct {
		head string
		want int
	}{
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", http.StatusBadRequest},
		{"POST https://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", http.StatusBadRequest},
		{"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", http.StatusMethodNotAllowed},
		{"POST /#frag HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", http.StatusBadRequest},
	} {
		resp := rawExchange(t, px.addr, tt.head) // 5 s deadline, no body sent
		if resp.StatusCode != tt.want || !resp.Close {
			t.Errorf("%q: %d, close %v; want %d and close", tt.head, resp.StatusCode, resp.Close, tt.want)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests; want none", n)
	}
	// A request sluice takes still gets 100 Continue, then its answer.
	c, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %v, %v; want 100 Continue", resp, err)
	}
	if _, err := io.WriteString(c, "abc"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %v, %v; want 200", resp, err)
	}
}

// TestHTTP10ChunkedRefused: an HTTP/1.0 response with a Transfer-Encoding
// has faulty framing (RFC 9112 §6.1): the client gets a 502, not the
// chunks as its body, which fasthttp would read to the close and pass on.
func TestHTTP10ChunkedRefused(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want int
	}{
		{"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", http.StatusBadGateway},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", http.StatusBadGateway},
		{"HTTP/1.0 200 OK\ntransfer-encoding: chunked\n\n2\r\nok\r\n0\r\n\r\n", http.StatusBadGateway},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", http.StatusOK},
	} {
		b := startRawBackend(t, tt.raw)
		px := startProxy(t, "routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+b.ln.Addr().String()+" }\n")
		out := rawWire(t, px.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tt.want || tt.want == http.StatusOK && string(body) != "ok" {
			t.Errorf("%q: %d %q, want %d", tt.raw, resp.StatusCode, body, tt.want)
		}
	}
}
