package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestAnswerSizesAwait: keep-alive answers of every length around the
// server's write buffer and twice it (an answer of exactly 4096 bytes
// included), one after another and pipelined in pairs, through the real
// front server whose answers' writes wait for the next request: every
// answer arrives whole, none waits for the client.
func TestAnswerSizesAwait(t *testing.T) {
	b := startBackend(t, "b1", sizedBody)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	var sizes []int
	for n := 3800; n <= 4200; n++ {
		sizes = append(sizes, n)
	}
	for n := 7900; n <= 8300; n += 7 {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 64<<10)
	for _, pipelined := range []bool{false, true} {
		c, err := net.DialTimeout("tcp", px.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for _, n := range sizes {
			req := fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: test\r\n\r\n", n)
			count := 1
			if pipelined {
				req, count = req+req, 2
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			for i := range count {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("n=%d pipelined=%v answer %d: %v", n, pipelined, i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(body, patterned(n)) {
					t.Fatalf("n=%d pipelined=%v answer %d: %d body bytes, %v", n, pipelined, i, len(body), err)
				}
			}
		}
	}
}
