package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBareLFRequestHeads: a request head that ends in a bare LF gets 400
// at once, not a 408 after timeouts.client_read (30 s here, longer than
// the test's 5 s deadline), and never reaches the backend; heads that end
// in CRLFCRLF are served whatever bare LFs their inner lines hold, and
// bodies that look like bare-LF heads pass whole, pipelined behind a long
// answer or after a 100 Continue.
func TestBareLFRequestHeads(t *testing.T) {
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("a", 6000)))
		case "/mid":
			// Under the 4 KiB hold threshold, but its head and body
			// overflow the server's 4 KiB buffer: a full buffer goes out
			// before the pipelined POST's body is read.
			_, _ = w.Write([]byte(strings.Repeat("a", 4000)))
		}
	})
	px := startProxy(t, "timeouts: { client_read: 30s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))

	for _, raw := range []string{
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\n",
		"GET / HTTP/1.1\r\nHost: x\n\r\n",
		"GET / HTTP/1.0\n\n",
		"\r\nGET / HTTP/1.1\nHost: x\n\n",
		"POST / HTTP/1.1\nHost: x\nContent-Length: 4\n\nbody",
	} {
		resp := rawExchange(t, px.addr, raw)
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			t.Errorf("%q: status %d, close %v; want 400 and close", raw, resp.StatusCode, resp.Close)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests; want none", n)
	}
	out := rawWire(t, px.addr, "GET / HTTP/1.1\nHost: x\n\n")
	if !strings.HasSuffix(out, "\r\n\r\n400 request head ends in a bare LF, not CRLF\n") {
		t.Errorf("answer %q lacks the reason", out)
	}

	c, br := dialProxy(t, px.addr)
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(wantStatus int, wantBody string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("status %d, want %d", resp.StatusCode, wantStatus)
		}
		if wantBody != "" {
			if _, body := b.lastRequest(); string(body) != wantBody {
				t.Fatalf("backend got body %q, want %q", body, wantBody)
			}
		}
	}
	// Bare LFs inside a head ending in CRLFCRLF, and in bodies.
	send("GET / HTTP/1.1\nHost: x\r\n\r\n")
	answer(http.StatusOK, "")
	send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\n\n\n")
	answer(http.StatusOK, "\n\n\n\n")
	// Pipelined behind a long answer, whose first part netconn holds and
	// sends as the server reads on: the POST's body arrives in a read of
	// its own, after that part went out, and starts like a bare-LF head.
	send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 23\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	send("GET / HTTP/1.1\nX: y\n\nzz")
	answer(http.StatusOK, "")
	answer(http.StatusOK, "GET / HTTP/1.1\nX: y\n\nzz")
	send("GET /mid HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\nabc")
	time.Sleep(50 * time.Millisecond)
	send("GET / HTTP/1.1\nX: y\n\nzz")
	answer(http.StatusOK, "")
	answer(http.StatusOK, "abcGET / HTTP/1.1\nX: y\n\nzz")
	// A 100 Continue whose body came with the head: the next head is
	// watched again.
	send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
	answer(http.StatusContinue, "")
	answer(http.StatusOK, "ok")
	send("GET / HTTP/1.1\nHost: x\n\n")
	answer(http.StatusBadRequest, "")
	c.Close()
	c, br = dialProxy(t, px.addr)
	// After a 100 Continue, the body is not taken for a head.
	send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 23\r\n\r\n")
	answer(http.StatusContinue, "")
	send("GET / HTTP/1.1\nX: y\n\nzz")
	answer(http.StatusOK, "GET / HTTP/1.1\nX: y\n\nzz")
	// Then a bare-LF head on the same connection.
	send("GET / HTTP/1.1\nHost: x\n\n")
	answer(http.StatusBadRequest, "")
	if n := b.hits.Load(); n != 8 {
		t.Errorf("backend got %d requests; want 8", n)
	}
}
