package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// r21ZReadAnswers reads answers to methods (in order) from all, the
// bytes a connection sent until it closed, and returns each answer's body
// and what is left over.
func r21ZReadAnswers(t *testing.T, all []byte, methods ...string) (codes []int, bodies []string, rest []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(all))
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("reading the answer to %s: %v (all bytes %q)", m, err, all)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes, bodies = append(codes, resp.StatusCode), append(bodies, string(b))
	}
	rest, _ = io.ReadAll(br)
	return codes, bodies, rest
}

func r21ZReadAll(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("no close after the refusal; got %q", all)
	}
	return all
}

// A HEAD answered by the handler, then a refused GET: in the same read
// (pipelined), and in the next turn. The GET's refusal keeps its text, the
// HEAD's answer has none.
func TestHeadThenRefusedGetKeepsBody(t *testing.T) {
	be := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{be}, nil))
	const head = "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
	const bad = "GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n"
	t.Run("pipelined", func(t *testing.T) {
		c, _ := dialProxy(t, px.addr)
		if _, err := io.WriteString(c, head+bad); err != nil {
			t.Fatal(err)
		}
		codes, bodies, rest := r21ZReadAnswers(t, r21ZReadAll(t, c), "HEAD", "GET")
		if codes[0] != 200 || codes[1] != 400 {
			t.Errorf("codes %v, want [200 400]", codes)
		}
		if !strings.HasPrefix(bodies[1], "400 ") || len(rest) != 0 {
			t.Errorf("GET refusal body %q, rest %q; want its error text and nothing after", bodies[1], rest)
		}
	})
	t.Run("next turn", func(t *testing.T) {
		c, br := dialProxy(t, px.addr)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		if _, err := io.WriteString(c, bad); err != nil {
			t.Fatal(err)
		}
		resp, err = http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.HasPrefix(string(b), "400 ") {
			t.Errorf("GET refusal %d %q, want 400 with its error text", resp.StatusCode, b)
		}
	})
}

// Requests whose line starts like HEAD but are not one: their refusals
// keep the text.
func TestNotHeadRefusalKeepsBody(t *testing.T) {
	be := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{be}, nil))
	for _, raw := range []string{
		"HEADX / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n",
		"HEADER / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n",
		"GET /HEAD HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n",
	} {
		c, _ := dialProxy(t, px.addr)
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		codes, bodies, rest := r21ZReadAnswers(t, r21ZReadAll(t, c), "GET")
		if codes[0] != 400 || !strings.HasPrefix(bodies[0], "400 ") || len(rest) != 0 {
			t.Errorf("%q: %d %q rest %q, want 400 with its text", raw, codes[0], bodies[0], rest)
		}
	}
}
