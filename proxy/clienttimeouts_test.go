package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClientTimeouts: timeouts.client_read, client_write and idle, which
// the front connections apply themselves (netconn, ClientTimeouts) rather
// than fasthttp's server, end to end. Each case checks that the timeout
// ends what it bounds, within a margin, and not before its time.
func TestClientTimeouts(t *testing.T) {
	const big = 32 << 20 // more than loopback's socket buffers take
	b := startBackend(t, "b1", sizedBody)
	pool := poolYAML("round_robin", []*testBackend{b}, nil)
	tests := []struct {
		name     string
		timeouts string
		// run plays the client's part and returns when the timeout
		// under test started to run.
		run func(t *testing.T, c net.Conn, br *bufio.Reader) time.Time
		// The connection must end between atLeast and ends after that,
		// having sent answer (a prefix; "" for nothing), or, with cut,
		// part of the answer only.
		atLeast, ends time.Duration
		answer        string
		cut           bool
	}{
		{
			name:     "idle keep-alive connection closed after idle",
			timeouts: "{ idle: 300ms, client_read: 10s }",
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) time.Time {
				getOn(t, c, br, "/")
				return time.Now()
			},
			atLeast: 250 * time.Millisecond, ends: 3 * time.Second,
		},
		{
			name:     "silent new connection gets 408 after client_read",
			timeouts: "{ client_read: 300ms, idle: 10s }",
			run:      func(*testing.T, net.Conn, *bufio.Reader) time.Time { return time.Now() },
			atLeast:  250 * time.Millisecond, ends: 3 * time.Second,
			answer: "HTTP/1.1 408",
		},
		{
			name:     "trickled head on a kept-alive connection gets 408 after client_read",
			timeouts: "{ client_read: 400ms, idle: 10s }",
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) time.Time {
				getOn(t, c, br, "/")
				start := time.Now()
				trickle(t, c, 2*time.Second)
				return start
			},
			atLeast: 350 * time.Millisecond, ends: 3 * time.Second,
			answer: "HTTP/1.1 408",
		},
		{
			name:     "client that does not read is cut after client_write",
			timeouts: "{ client_write: 300ms }",
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) time.Time {
				if _, err := io.WriteString(c, "GET /?n="+strconv.Itoa(big)+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				// The answer is buffered whole before its first byte goes
				// out, and with -race making it (patterned) and taking it
				// in take seconds on a loaded machine: the client stops
				// reading once the first bytes are there, not at a fixed
				// time after the request, by when the proxy may not have
				// begun to write (it then never waited client_write).
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := br.Peek(1); err != nil {
					t.Fatalf("no answer: %v", err)
				}
				start := time.Now()
				_ = c.SetDeadline(start.Add(8 * time.Second))
				time.Sleep(1500 * time.Millisecond) // not reading
				return start
			},
			ends:   4 * time.Second,
			answer: "HTTP/1.1 200", cut: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px := startProxy(t, "timeouts: "+tt.timeouts+"\nlimits: { max_response_bytes: 67108864 }\n"+pool)
			c, br := dialProxy(t, px.addr) // 5 s deadline
			start := tt.run(t, c, br)
			got, err := io.ReadAll(br)
			took := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection was still open at its deadline (%d bytes read)", len(got))
			}
			if took < tt.atLeast || took > tt.ends {
				t.Errorf("ended after %v, want between %v and %v", took, tt.atLeast, tt.ends)
			}
			switch {
			case tt.answer == "" && len(got) != 0:
				t.Errorf("read %.80q before the close, want nothing", got)
			case !strings.HasPrefix(string(got), tt.answer):
				t.Errorf("answer %.80q, want %q", got, tt.answer)
			case tt.cut && len(got) >= big:
				t.Errorf("read %d bytes: the whole answer, want it cut", len(got))
			}
		})
	}
}

// TestClientTimeoutsSpanRequests: a keep-alive connection whose requests
// together take many times client_read and idle, each within them, is
// never cut: a deadline belongs to its turn, and a timer left armed for an
// earlier one does not end a later turn.
func TestClientTimeoutsSpanRequests(t *testing.T) {
	b := startBackend(t, "b1", nil)
	// The requests take about 2.8 s: four times idle and over five times
	// client_read, each within them by 400-500 ms (by 50 ms with the 150ms
	// and 250ms once used, which a loaded machine overran: 408s, resets).
	px := startProxy(t, "timeouts: { client_read: 500ms, idle: 700ms }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialProxy(t, px.addr)
	for i := range 12 {
		getOn(t, c, br, "/")
		if i%3 == 2 {
			// A request whose head comes in two parts, 100 ms apart.
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(c, "Host: test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			readOK(t, br, i)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getOn sends a GET for path and reads a 200 answer.
func getOn(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	readOK(t, br, 0)
}

func readOK(t *testing.T, br *bufio.Reader, i int) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request %d: %v", i, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("request %d: %d, %v", i, resp.StatusCode, err)
	}
}

// trickle starts a request head and sends one more header line every
// 50 ms for up to d, or until a write fails (the proxy gave up on it).
func trickle(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for end := time.Now().Add(d); time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
				return
			}
		}
	}()
}
