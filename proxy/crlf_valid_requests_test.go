package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCRLFEndCheckKeepsValidRequests: the handler's new check
// (rejected, bareLFEnd: raw header fields must end in CRLFCRLF) refuses
// none of the valid heads that reach it in other shapes: pipelined in one
// write, lower-case field names (normalised by fasthttp), a chunked body
// with a trailer (the trailer is parsed apart from the raw head), a body
// after 100-continue, a head near max_header_bytes, HTTP/1.0 with no
// field at all (empty raw head) and with keep-alive.
func TestCRLFEndCheckKeepsValidRequests(t *testing.T) {
	be := startBackend(t, "a", nil)
	px := startProxy(t, "limits: { max_header_bytes: 16384 }\n"+poolYAML("round_robin", []*testBackend{be}, nil))
	big := strings.Repeat("v", 12000)
	reqs := []string{
		"GET /1 HTTP/1.1\r\nhost: x\r\nx-lower: a \r\n\r\n",
		"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST /3 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz",
		"GET /4 HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n",
		"GET /5 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
		"GET /6 HTTP/1.0\r\n\r\n",
	}
	c, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	var codes []int
	for len(codes) < len(reqs) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after answers %v: %v", codes, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusContinue {
			continue
		}
		codes = append(codes, resp.StatusCode)
	}
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("request %d (%.40q...) answered %d, want 200", i+1, reqs[i], code)
		}
	}
	if n := be.hits.Load(); n != int64(len(reqs)) {
		t.Errorf("backend got %d requests, want %d", n, len(reqs))
	}
}
