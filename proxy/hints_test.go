package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEarlyHints: a 103 Early Hints from the backend reaches the client at
// once, before the final answer, which the backend sends only after the
// client has seen the 103; other interim answers are dropped; an HTTP/1.0
// client gets none; a final head in bare LFs after a 1xx is still read.
func TestEarlyHints(t *testing.T) {
	const final = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name     string
		interims []string // written first, in order
		wait     bool     // the final answer waits for the client's 103
		proto    string
		want     []string // the Link values of each 103 the client gets
		final    string
	}{
		{"passed before the final answer", []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n"},
			true, "HTTP/1.1", []string{"</a.css>; rel=preload|</b.js>; rel=preload"}, final},
		{"each of several", []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </b.js>\r\n\r\n"},
			true, "HTTP/1.1", []string{"</a.css>", "</b.js>"}, final},
		{"100 and 102 dropped", []string{"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 102 Processing\r\n\r\n",
			"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"}, true, "HTTP/1.1", []string{"</a.css>"}, final},
		{"none to HTTP/1.0", []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"},
			false, "HTTP/1.0", nil, final},
		{"bare-LF final after a 1xx", []string{"HTTP/1.1 100 Continue\r\n\r\n"},
			false, "HTTP/1.1", nil, "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(chan struct{})
			ln, _ := serveKeptAlive(t, func(c net.Conn, _ *http.Request) {
				for _, h := range tt.interims {
					_, _ = io.WriteString(c, h)
				}
				if tt.wait {
					select {
					case <-seen:
					case <-time.After(5 * time.Second):
					}
				}
				_, _ = io.WriteString(c, tt.final)
			})
			c, br := proxyClient(t, ln, "")
			_ = c.SetDeadline(time.Now().Add(4 * time.Second))
			if _, err := io.WriteString(c, "GET / "+tt.proto+"\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %d early hints: %v (the final answer waits for them)", len(got), err)
				}
				if resp.StatusCode == http.StatusEarlyHints {
					got = append(got, strings.Join(resp.Header.Values("Link"), "|"))
					if len(got) == len(tt.want) && tt.wait {
						close(seen)
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("Link") != "" {
					t.Errorf("final answer %d %q, Link %q; want 200 \"ok\" without Link", resp.StatusCode, body, resp.Header.Get("Link"))
				}
				break
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("early hints %q, want %q", got, tt.want)
			}
		})
	}
}

// hintsBackend answers /hint with a 103 and then 200 "ok", anything else
// with 200 and a body of n bytes.
func hintsBackend(t *testing.T, n int) net.Listener {
	big := strings.Repeat("b", n)
	ln, _ := serveKeptAlive(t, func(c net.Conn, req *http.Request) {
		if req.URL.Path == "/hint" {
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n"+big)
	})
	return ln
}

// readAnswers reads want final answers from br and returns each status
// and body, 103s included (their body empty).
func readAnswers(t *testing.T, br *bufio.Reader, want int) (codes []int, bodies []string) {
	t.Helper()
	for finals := 0; finals < want; {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %v: %v", codes, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes, bodies = append(codes, resp.StatusCode), append(bodies, string(body))
		if resp.StatusCode != http.StatusEarlyHints {
			finals++
		}
	}
	return codes, bodies
}

// TestEarlyHintsPipelined: a 103 for a request that came pipelined behind
// another never overtakes or splits the earlier answer, which fasthttp may
// still hold in its write buffer (short and long answers).
func TestEarlyHintsPipelined(t *testing.T) {
	for _, n := range []int{100, 6000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c, br := proxyClient(t, hintsBackend(t, n), "")
			_ = c.SetDeadline(time.Now().Add(4 * time.Second))
			if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			codes, bodies := readAnswers(t, br, 2)
			if codes[0] != 200 || len(bodies[0]) != n || bodies[len(bodies)-1] != "ok" {
				t.Fatalf("answers %v, first body %d bytes; want the whole first answer first, then the second", codes, len(bodies[0]))
			}
		})
	}
}

// TestEarlyHintsAfterIdle: a 103 on a connection that sat idle for longer
// than timeouts.client_write still goes out (it gets a write deadline of
// its own, not the one left from the answer before).
func TestEarlyHintsAfterIdle(t *testing.T) {
	c, br := proxyClient(t, hintsBackend(t, 10), "timeouts: { client_write: 300ms }\n")
	for i := range 2 {
		if i == 1 {
			time.Sleep(500 * time.Millisecond)
		}
		_ = c.SetDeadline(time.Now().Add(4 * time.Second))
		if _, err := io.WriteString(c, "GET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if codes, _ := readAnswers(t, br, 1); len(codes) != 2 || codes[0] != http.StatusEarlyHints {
			t.Errorf("request %d: answers %v, want a 103 then the final answer", i+1, codes)
		}
	}
}

// TestEarlyHintsAfterContinue: once sluice has answered 100 Continue on a
// connection, its later requests get no 103 (netconn's Turns is then ahead
// of the request count and could hide pipelining), yet their answers are
// whole.
func TestEarlyHintsAfterContinue(t *testing.T) {
	c, br := proxyClient(t, hintsBackend(t, 10), "")
	_ = c.SetDeadline(time.Now().Add(4 * time.Second))
	continuedPOST(t, c, br)
	if _, err := io.WriteString(c, "GET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if codes, bodies := readAnswers(t, br, 1); len(codes) != 1 || codes[0] != 200 || bodies[0] != "ok" {
		t.Errorf("answers %v %q, want 200 \"ok\" and no 103", codes, bodies)
	}
}

// proxyClient starts sluice, with extra added to its config, in front of
// the backend listening on ln, and returns a client connection to it (closed
// when the test ends) with a reader over it.
func proxyClient(t *testing.T, ln net.Listener, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	px := startProxy(t, extra+"routes:\n  - pool: p\npools:\n  p:\n    backends:\n      - { address: "+ln.Addr().String()+" }\n")
	return dialProxy(t, px.addr)
}

// TestEarlyHintsPipelinedBodyRead: a request that came pipelined behind a
// long answer (its head in the server's read buffer while that answer was
// written) and whose body arrives later gets no 103 in the middle of the
// earlier answer. fasthttp keeps the earlier answer's tail in its write
// buffer (it flushes only when its read buffer is empty) while it reads
// the second request's body; that read is the first after a write, so
// netconn's Turns catches up with the request count and hintable lets
// the 103 out, through a writer of its own, ahead of the tail.
// (Found by the review of the lent bodies, which it does not involve.)
func TestEarlyHintsPipelinedBodyRead(t *testing.T) {
	const n = 6000
	c, br := proxyClient(t, hintsBackend(t, n), "")
	_ = c.SetDeadline(time.Now().Add(4 * time.Second))
	// The POST's head comes pipelined behind the GET; its body later.
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /hint HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := io.WriteString(c, "body"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("first answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body) != n {
		t.Fatalf("first answer %d, %d bytes (%v); want 200 and %d bytes", resp.StatusCode, len(body), err, n)
	}
	if i := bytes.Index(body, []byte("HTTP/1.1 103")); i >= 0 || !bytes.Equal(body, bytes.Repeat([]byte("b"), n)) {
		t.Fatalf("first answer's body is not the backend's: a 103 at offset %d of it (%q...)", i, body[max(i, 0):min(max(i, 0)+40, n)])
	}
	codes, bodies := readAnswers(t, br, 1)
	if bodies[len(bodies)-1] != "ok" {
		t.Fatalf("second answer %v %q, want ending 200 \"ok\"", codes, bodies)
	}
}

// TestEarlyHintsAfterContinuePipelined: after a 100 Continue, which puts
// netconn's Turns ahead of the request count, a request pipelined behind
// another, which puts it back by one, still gets no 103: the two must not
// cancel out, or the 103 would overtake the earlier answer fasthttp holds
// in its write buffer. (Found by review.)
func TestEarlyHintsAfterContinuePipelined(t *testing.T) {
	c, br := proxyClient(t, hintsBackend(t, 100), "")
	_ = c.SetDeadline(time.Now().Add(4 * time.Second))
	continuedPOST(t, c, br)
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /hint HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if codes, bodies := readAnswers(t, br, 2); len(codes) != 2 || codes[0] != 200 || codes[1] != 200 || bodies[1] != "ok" {
		t.Errorf("answers %v %q, want 200 (the 100-byte body), 200 \"ok\" and no 103", codes, bodies)
	}
}

// TestEarlyHintsCapAcrossRetries: at most maxHints 103 Early Hints go to
// the client per request, not per attempt: a GET whose first attempt
// fails after its backend sent maxHints 103s gets none from the retry.
// (Found by review: readResponse's cap alone counts per exchange, and the
// client got 8 per attempt.)
func TestEarlyHintsCapAcrossRetries(t *testing.T) {
	hintsThenClose := func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		for i := range maxHints {
			fmt.Fprintf(c, "HTTP/1.1 103 Early Hints\r\nLink: </%d.css>; rel=preload\r\n\r\n", i)
		}
		// Then the connection closes, with no final answer.
	}
	a, b := serveRaw(t, hintsThenClose), serveRaw(t, hintsThenClose)
	px := startProxy(t, fmt.Sprintf(`routes: [{ pool: p }]
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }, { address: %s }] }
retries: { attempts: 2 }
`, a.Addr(), b.Addr()))
	c, br := dialProxy(t, px.addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	codes, _ := readAnswers(t, br, 1)
	hints := 0
	for _, code := range codes {
		if code == http.StatusEarlyHints {
			hints++
		}
	}
	if hints > maxHints {
		t.Errorf("the client got %d 103 Early Hints for one request (answers %v); want at most %d per request, as the README says",
			hints, codes, maxHints)
	}
}

// continuedPOST sends a POST with Expect: 100-continue on c, its body once
// sluice answers 100 Continue, and reads its 200.
func continuedPOST(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %v, %v; want 100 Continue", resp, err)
	}
	if _, err := io.WriteString(c, "body"); err != nil {
		t.Fatal(err)
	}
	if codes, _ := readAnswers(t, br, 1); len(codes) != 1 || codes[0] != 200 {
		t.Fatalf("answers to the POST %v, want 200", codes)
	}
}
