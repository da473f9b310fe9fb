package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"sluice/netconn"
)

// holdCounter counts the HoldNextWrite calls the handler makes on the
// connections a listener accepts.
type holdCounter struct {
	net.Listener
	holds *atomic.Int64
}

func (l holdCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingHolds{Conn: c.(*netconn.Conn), holds: l.holds}, nil
}

type countingHolds struct {
	*netconn.Conn
	holds *atomic.Int64
}

func (c countingHolds) HoldNextWrite() {
	c.holds.Add(1)
	c.Conn.HoldNextWrite()
}

// patterned is n bytes that differ from any shifted copy of themselves,
// so a lost, doubled or reordered piece shows.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestLongResponses sends responses around the client write buffer's size
// through the held first write (netconn.Conn.HoldNextWrite), one at a
// time, pipelined and before a close, and checks every byte and which
// responses the handler held. (A review found the pipelined-then-close
// loss of a response's tail.)
func TestLongResponses(t *testing.T) {
	b := startBackend(t, "b1", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code != http.StatusNoContent && code != http.StatusNotModified {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.WriteHeader(code)
		if r.Method != http.MethodHead {
			_, _ = w.Write(patterned(n))
		}
	})
	var holds atomic.Int64
	px := startProxyOn(t, poolYAML("round_robin", []*testBackend{b}, nil), nil, func(ln net.Listener) net.Listener {
		return holdCounter{Listener: ln, holds: &holds}
	})
	tests := []struct {
		method   string
		n, code  int
		wantHold bool
	}{
		{http.MethodGet, 0, 200, false},
		{http.MethodGet, 1000, 200, false},
		{http.MethodGet, ClientWriteBufferSize - 1, 200, false},
		{http.MethodGet, ClientWriteBufferSize, 200, true},
		{http.MethodGet, ClientWriteBufferSize + 1, 200, true},
		{http.MethodGet, 2*ClientWriteBufferSize - 1, 200, true},
		{http.MethodGet, 2 * ClientWriteBufferSize, 200, true},
		{http.MethodGet, 64 << 10, 200, true},
		{http.MethodGet, 1<<20 + 3, 200, true},
		{http.MethodGet, 64 << 10, 404, true},
		{http.MethodHead, 64 << 10, 200, false},
		{http.MethodGet, 0, 204, false},
		{http.MethodGet, 0, 304, false},
	}
	for _, tt := range tests {
		for _, mode := range []string{"keep-alive", "pipelined", "close", "pipelined then close"} {
			t.Run(fmt.Sprintf("%s %d %d %s", tt.method, tt.n, tt.code, mode), func(t *testing.T) {
				before := holds.Load()
				target := fmt.Sprintf("/?n=%d&code=%d", tt.n, tt.code)
				req := tt.method + " " + target + " HTTP/1.1\r\nHost: test\r\n"
				var wire string
				count := 1
				switch mode {
				case "keep-alive":
					wire = req + "\r\n"
				case "pipelined":
					wire, count = req+"\r\n"+req+"\r\n", 2
				case "close":
					wire = req + "Connection: close\r\n\r\n"
				case "pipelined then close":
					// The second response's hold is asked for while the
					// first's is held (no read between), then the server
					// closes.
					wire, count = req+"\r\n"+req+"Connection: close\r\n\r\n", 2
				}
				c, err := net.DialTimeout("tcp", px.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c, wire); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				want := patterned(tt.n)
				if tt.method == http.MethodHead || tt.code == 204 || tt.code == 304 {
					want = nil
				}
				for i := 0; i < count; i++ {
					hr, _ := http.NewRequest(tt.method, "http://test"+target, nil)
					resp, err := http.ReadResponse(br, hr)
					if err != nil {
						t.Fatalf("response %d: %v", i, err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatalf("response %d body: %v", i, err)
					}
					if resp.StatusCode != tt.code || !bytes.Equal(body, want) {
						t.Fatalf("response %d: status %d, %d body bytes (equal: %v); want %d, %d bytes",
							i, resp.StatusCode, len(body), bytes.Equal(body, want), tt.code, len(want))
					}
				}
				if mode == "close" || mode == "pipelined then close" {
					if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
						t.Fatalf("after Connection: close: read %d, %v; want 0, EOF", n, err)
					}
				}
				wantHolds := int64(0)
				if tt.wantHold {
					wantHolds = int64(count)
				}
				if got := holds.Load() - before; got != wantHolds {
					t.Fatalf("HoldNextWrite calls = %d, want %d", got, wantHolds)
				}
			})
		}
	}
}
