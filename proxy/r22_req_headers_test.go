package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a request's repeated Content-Type or User-Agent lines reach the
// backend as one line, the last; every other repeated field (Cookie,
// Authorization, Referer, Range, Content-Encoding, X-*) goes on line for
// line. README, Forwarding: only hop-by-hop fields (and the forwarding
// fields sluice sets) are removed; the known limitation there is that
// repeated fields may change order, not that one is dropped. nginx and
// HAProxy pass both lines as received. fasthttp's request parser keeps
// Content-Type and User-Agent in dedicated single slots (a later line
// overwrites an earlier one), and sluice writes the parsed header
// upstream (prepareRequest in handler.go, then Request.Write). This
// creates a disagreement that was not there: a filter in front of sluice
// and a backend that both read the first Content-Type
// ("application/x-www-form-urlencoded", which the filter inspects as a
// form) now disagree, as the backend gets only the second
// ("application/json") and parses the body as JSON unseen.
func TestRepeatedContentTypeNotCutToLast(t *testing.T) {
	be := startSmuggleBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{{srv: &httptest.Server{Listener: be.ln}}}, nil))
	c, br := dialProxy(t, px.addr)
	const req = "POST /x HTTP/1.1\r\nHost: a\r\n" +
		"Content-Type: application/x-www-form-urlencoded\r\n" +
		"User-Agent: one\r\n" +
		"Content-Type: application/json\r\n" +
		"User-Agent: two\r\n" +
		"Referer: r1\r\nReferer: r2\r\n" + // control: a plain repeated field
		"Content-Length: 2\r\n\r\n{}"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		// A 400 for the conflicting singleton would also be acceptable;
		// then nothing may reach the backend.
		if raw, _ := be.snapshot(); resp.StatusCode == 400 && raw == "" {
			return
		}
		t.Fatalf("status %d", resp.StatusCode)
	}
	var raw string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if raw, _ = be.snapshot(); strings.Contains(raw, "\r\n\r\n") {
			break
		}
	}
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	got := map[string][]string{}
	for _, line := range strings.Split(head, "\r\n")[1:] {
		n, v, _ := strings.Cut(line, ":")
		got[strings.ToLower(n)] = append(got[strings.ToLower(n)], strings.TrimSpace(v))
	}
	for name, want := range map[string][]string{
		"referer":      {"r1", "r2"},
		"content-type": {"application/x-www-form-urlencoded", "application/json"},
		"user-agent":   {"one", "two"},
	} {
		if !slices.Equal(got[name], want) {
			t.Errorf("backend got %s %q, want %q (as sent)", name, got[name], want)
		}
	}
	if t.Failed() {
		t.Logf("backend head:\n%s", head)
	}
}
