package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReview13ReadTimeoutFromFirstByte: on a kept-alive connection
// timeouts.client_read runs from the next request's first byte, as
// fasthttp's ReadTimeout does (it replaces the idle deadline there): a
// request whose head comes in two parts, the second after the idle wait's
// deadline has passed but well within client_read of the first byte, is
// answered. The netconn connections used to keep the idle wait's deadline
// for the rest of the request whenever it came sooner than client_read
// from the request's first wait, and answered 408 at the end of the idle
// timeout. Cases: a short answer before (the yield and read), a long one
// (the wait inside the answer's write, AwaitNextRequest), and a head
// trickled after an idle wait, which must still get 408 within about
// client_read of its first byte.
func TestReview13ReadTimeoutFromFirstByte(t *testing.T) {
	b := startBackend(t, "b1", sizedBody) // ?n=8192: a long answer, which waits (AwaitNextRequest)
	pool := poolYAML("round_robin", []*testBackend{b}, nil)
	tests := []struct {
		name     string
		timeouts string
		first    string        // the request before the idle wait
		idle     time.Duration // the client's idle time before the next
		gap      time.Duration // between the two parts of its head; 0: trickled
		want408  bool
	}{
		{"split head after a short answer", "{ idle: 300ms, client_read: 3s }", "/", 200 * time.Millisecond, 400 * time.Millisecond, false},
		{"split head after a long answer", "{ idle: 300ms, client_read: 3s }", "/?n=8192", 200 * time.Millisecond, 400 * time.Millisecond, false},
		{"split head, idle longer than client_read", "{ idle: 1s, client_read: 600ms }", "/", 700 * time.Millisecond, 450 * time.Millisecond, false},
		{"trickled head after a short answer", "{ idle: 2s, client_read: 400ms }", "/", 300 * time.Millisecond, 0, true},
		{"trickled head after a long answer", "{ idle: 2s, client_read: 400ms }", "/?n=8192", 300 * time.Millisecond, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px := startProxy(t, "timeouts: "+tt.timeouts+"\n"+pool)
			c, br := dialProxy(t, px.addr)
			getOn(t, c, br, tt.first)
			time.Sleep(tt.idle)
			start := time.Now()
			if tt.want408 {
				trickle(t, c, 3*time.Second)
				got, err := io.ReadAll(br)
				took := time.Since(start)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the trickled request was still being read after 5 s")
				}
				if !strings.HasPrefix(string(got), "HTTP/1.1 408") {
					t.Errorf("answer %.80q, want a 408", got)
				}
				if took < 350*time.Millisecond || took > 2*time.Second {
					t.Errorf("408 after %v from the first byte, want about client_read (400ms)", took)
				}
				return
			}
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tt.gap)
			if _, err := io.WriteString(c, "Host: test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to a request read within client_read of its first byte: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answer %d %q after %v, want 200: the idle deadline bounded the request", resp.StatusCode, body, time.Since(start))
			}
		})
	}
}

// TestReview13EarlyHintsThenSlowAnswer: a 103 is written under a write
// deadline of its own (clientHints: client_write, at most 1 s); the final
// answer, which the backend sends later, must get timeouts.client_write
// afresh, as fasthttp gave it (it set WriteTimeout after the handler).
// The netconn connections dropped the 103's deadline only for answers
// that wait for the next request (AwaitNextRequest(true): keep-alive,
// body of 4 KiB to 128 KiB); any other answer coming after that deadline
// had passed failed at its first write, and the client got the 103 and
// then a closed connection. Short, long and closing answers.
func TestReview13EarlyHintsThenSlowAnswer(t *testing.T) {
	tests := []struct {
		name  string
		body  int
		close bool // the client asks for Connection: close
	}{
		{"short answer", 2, false},
		{"answer that waits for the next request", 8 << 10, false},
		{"answer over keptBodyLimit", 256 << 10, false},
		{"short answer, Connection: close", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Repeat("k", tt.body)
			ln, _ := serveKeptAlive(t, func(c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
				time.Sleep(600 * time.Millisecond) // past the 103's deadline (300 ms)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(tt.body)+"\r\n\r\n"+body)
			})
			c, br := proxyClient(t, ln, "timeouts: { client_write: 300ms }\nlimits: { max_response_bytes: 1048576 }\n")
			_ = c.SetDeadline(time.Now().Add(4 * time.Second))
			req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			if tt.close {
				req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			}
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			var codes []int
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %v: %v (the final answer never came)", codes, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes = append(codes, resp.StatusCode)
				if resp.StatusCode == http.StatusEarlyHints {
					continue
				}
				if resp.StatusCode != http.StatusOK || err != nil || len(got) != tt.body {
					t.Fatalf("final answer %d, %d of %d bytes, %v", resp.StatusCode, len(got), tt.body, err)
				}
				break
			}
			if len(codes) != 2 || codes[0] != http.StatusEarlyHints {
				t.Errorf("answers %v, want a 103 then 200", codes)
			}
		})
	}
}

// TestReview13BodyTimeouts: a request body is read under client_read,
// from the head's first byte for a plain POST (a body trickled in several
// reads gets 408 and cannot be stretched), and from the 100 Continue on
// for one that asked for it (a client that never sends the body gets 408
// after about client_read); a POST whose body comes in several reads well
// within client_read is answered.
func TestReview13BodyTimeouts(t *testing.T) {
	b := startBackend(t, "b1", nil)
	pool := poolYAML("round_robin", []*testBackend{b}, nil)
	px := startProxy(t, "timeouts: { client_read: 400ms, idle: 5s }\n"+pool)
	t.Run("body in parts within client_read", func(t *testing.T) {
		// A proxy of its own whose client_read leaves 1.8 s to spare
		// after the 200 ms the parts take (400 ms left 200 ms, which a
		// loaded machine overran: 408).
		roomy := startProxy(t, "timeouts: { client_read: 2s, idle: 5s }\n"+pool)
		c, br := dialProxy(t, roomy.addr)
		for i := range 2 { // a new connection, then a kept-alive one
			if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nab"); err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{"cd", "ef"} {
				time.Sleep(100 * time.Millisecond)
				if _, err := io.WriteString(c, part); err != nil {
					t.Fatal(err)
				}
			}
			readOK(t, br, i)
			if _, got := b.lastRequest(); string(got) != "abcdef" {
				t.Fatalf("backend got body %q", got)
			}
		}
	})
	t.Run("trickled body", func(t *testing.T) {
		c, br := dialProxy(t, px.addr)
		getOn(t, c, br, "/")
		start := time.Now()
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		go func() {
			for range 60 {
				time.Sleep(50 * time.Millisecond)
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		}()
		got, _ := io.ReadAll(br)
		if took := time.Since(start); !strings.HasPrefix(string(got), "HTTP/1.1 408") || took < 350*time.Millisecond || took > 2*time.Second {
			t.Errorf("answer %.60q after %v, want 408 after about 400ms", got, took)
		}
	})
	t.Run("no body after 100 Continue", func(t *testing.T) {
		c, br := dialProxy(t, px.addr)
		getOn(t, c, br, "/")
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusContinue {
			t.Fatalf("%v, %v; want 100 Continue", resp, err)
		}
		start := time.Now()
		got, _ := io.ReadAll(br)
		if took := time.Since(start); !strings.HasPrefix(string(got), "HTTP/1.1 408") || took < 350*time.Millisecond || took > 2*time.Second {
			t.Errorf("answer %.60q after %v, want 408 after about 400ms", got, took)
		}
	})
	t.Run("body after 100 Continue", func(t *testing.T) {
		c, br := dialProxy(t, px.addr)
		for i := range 3 {
			if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusContinue {
				t.Fatalf("%v, %v; want 100 Continue", resp, err)
			}
			time.Sleep(300 * time.Millisecond)
			if _, err := io.WriteString(c, "body"); err != nil {
				t.Fatal(err)
			}
			readOK(t, br, i)
			time.Sleep(300 * time.Millisecond)
		}
	})
}

// TestReview13PipelinedSlowReader: each of several pipelined answers is
// written under timeouts.client_write of its own, as fasthttp set
// WriteTimeout before each: a client that pipelines requests for long
// answers and takes most of client_write to start reading each is not
// cut. The netconn connections used to set one write deadline for all
// the answers written between two reads of requests (the pipelined
// requests came in one read), unless an answer waited for the next
// request (AwaitNextRequest(true)), and cut the second answer.
func TestReview13PipelinedSlowReader(t *testing.T) {
	const n = 8 << 20
	b := startBackend(t, "b1", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, n))
	})
	px := startProxy(t, "timeouts: { client_write: 800ms }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialProxy(t, px.addr)
	// A fixed receive buffer: autotuning may grow it to take a whole answer.
	if err := c.(*net.TCPConn).SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: test\r\n\r\nGET /b HTTP/1.1\r\nHost: test\r\n\r\nGET /c HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		time.Sleep(400 * time.Millisecond) // half of client_write
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || got != n || err != nil {
			t.Fatalf("answer %d: %d, %d of %d bytes, %v: cut", i, resp.StatusCode, got, n, err)
		}
	}
}
