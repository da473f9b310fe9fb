package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// dialRcvBuf opens a client connection to addr whose receive buffer is
// fixed at rcv bytes before the connect (so the window stays small and
// autotuning cannot take a whole answer), under an 8 s deadline.
func dialRcvBuf(t *testing.T, addr string, rcv int) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcv) })
	}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(8 * time.Second))
	return c, bufio.NewReaderSize(c, 64<<10)
}

// Found by review. What was wrong: timeouts.client_write cuts a client that takes a long answer
// steadily, only more slowly than the whole answer can be written within
// client_write. README (Top level): client_write bounds "writing a
// response to a client that does not take it"; this client never stops
// taking it (it reads about 10 MB/s, never pausing more than a few ms).
// nginx's send_timeout, HAProxy's timeout client and Envoy's idle
// timeouts are all inactivity timeouts: a download over a slow link
// that keeps moving is never cut. netconn sets one write deadline per
// turn, at the answer's first write that has to wait (writeStep: writeSet),
// and progress never moves it, so the answer is cut client_write after it
// started, whatever the client has read: a 32 MiB download over an
// 8 Mbit/s link (max_response_bytes allows 64 MiB) dies after 30 s
// with the defaults.
func TestSteadySlowReaderNotCut(t *testing.T) {
	const n = 32 << 20
	b := startBackend(t, "b1", sizedBody)
	px := startProxy(t, "timeouts: { client_write: 1s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialRcvBuf(t, px.addr, 256<<10)
	if _, err := io.WriteString(c, "GET /?n="+strconv.Itoa(n)+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Reading 32 MiB at 10 MB/s takes 3.2 s, from here: the answer's
	// making and buffering (seconds under -race on a loaded machine) ate
	// into the dial's deadline, and the client's own timeout read as a cut.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const rate = 10 << 20 // bytes per second
	start := time.Now()
	buf := make([]byte, 64<<10)
	got, longest, last := 0, time.Duration(0), start
	for got < n {
		m, err := resp.Body.Read(buf)
		got += m
		if m > 0 {
			now := time.Now()
			longest = max(longest, now.Sub(last))
			last = now
		}
		if err != nil && !(errors.Is(err, io.EOF) && got == n) {
			t.Fatalf("answer cut after %d of %d bytes, %v into it (client_write 1s; the client read at %d MB/s, its longest wait for bytes %v): %v",
				got, n, time.Since(start).Round(time.Millisecond), rate>>20, longest.Round(time.Millisecond), err)
		}
		// Keep to rate: never ahead of it.
		if ahead := time.Duration(float64(got)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	t.Logf("read %d bytes in %v", got, time.Since(start))
}
