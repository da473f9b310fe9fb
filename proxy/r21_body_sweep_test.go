package proxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// r21Sizes are response body lengths around every threshold the proxy
// has: the server's write buffer, the lent classes, splicing's lower
// bound, the small and big pipes, and past them.
var r21Sizes = []int{0, 1, 4095, 4096, 4097, 16 << 10, 32<<10 - 1, 32 << 10, 32<<10 + 1, 64 << 10,
	128<<10 - 1, 128 << 10, 128<<10 + 1, 512 << 10, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3 << 20}

// r21Answer writes an answer of body b framed as framing, its bytes
// cut as pattern says.
func r21Answer(c net.Conn, framing, pattern string, b []byte) bool {
	var head string
	switch framing {
	case "length":
		head = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(b))
	case "chunked":
		head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	case "close11":
		head = "HTTP/1.1 200 OK\r\n\r\n"
	case "close10":
		head = "HTTP/1.0 200 OK\r\n\r\n"
	case "lengthlf":
		head = fmt.Sprintf("HTTP/1.1 200 OK\nContent-Length: %d\n\n", len(b))
	case "chunkedlf":
		head = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
	case "length10":
		head = fmt.Sprintf("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n", len(b))
	}
	wire := []byte(head)
	if strings.HasPrefix(framing, "chunked") {
		for i := 0; i < len(b); i += 7000 {
			j := min(i+7000, len(b))
			wire = append(wire, fmt.Sprintf("%x;ext=%d\r\n", j-i, i)...)
			wire = append(wire, b[i:j]...)
			wire = append(wire, "\r\n"...)
		}
		wire = append(wire, "0\r\nX-Trailer: t\r\n\r\n"...)
	} else {
		wire = append(wire, b...)
	}
	var err error
	switch pattern {
	case "one":
		_, err = c.Write(wire)
	case "apart":
		if _, err = c.Write(wire[:len(head)]); err == nil {
			time.Sleep(2 * time.Millisecond)
			_, err = c.Write(wire[len(head):])
		}
	case "pieces":
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		for i := 0; i < len(wire) && err == nil; i += 1000 {
			_, err = c.Write(wire[i:min(i+1000, len(wire))])
		}
	}
	return err == nil && !strings.HasPrefix(framing, "close")
}

// TestBodySweep: every body length around the proxy's
// thresholds, framed each way a backend may frame it (heads in CRLFs and in bare
// LFs) and written whole,
// head apart, or in 1000-byte pieces, reaches HTTP/1.1 and HTTP/1.0
// clients byte for byte, with a Content-Length, on connections that stay
// usable (passing).
func TestBodySweep(t *testing.T) {
	bodies := map[int][]byte{}
	for _, n := range r21Sizes {
		bodies[n] = seeded(n, n)
	}
	addr := bodiesBackendLong(t, func(c net.Conn, req *fasthttp.Request) bool {
		// /<framing>/<pattern>/<n>
		parts := strings.Split(string(req.URI().Path()), "/")
		n, _ := strconv.Atoi(parts[3])
		return r21Answer(c, parts[1], parts[2], bodies[n])
	})
	px := bodiesProxy(t, addr, "timeouts:\n  response: 10s\n")
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		for _, framing := range []string{"length", "chunked", "close11", "close10", "length10", "lengthlf", "chunkedlf"} {
			for _, pattern := range []string{"one", "apart", "pieces"} {
				for _, n := range r21Sizes {
					path := fmt.Sprintf("/%s/%s/%d", framing, pattern, n)
					hdr := "Host: x\r\n"
					if proto == "HTTP/1.0" {
						hdr = "Connection: keep-alive\r\n"
					}
					if _, err := fmt.Fprintf(c, "GET %s %s\r\n%s\r\n", path, proto, hdr); err != nil {
						t.Fatalf("%s %s: write: %v", proto, path, err)
					}
					req, _ := http.NewRequest("GET", "http://x/", nil)
					resp, err := http.ReadResponse(br, req)
					if err != nil {
						t.Fatalf("%s %s: %v", proto, path, err)
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || sha256.Sum256(got) != sha256.Sum256(bodies[n]) {
						t.Fatalf("%s %s: status %d, %d bytes (want %d), err %v", proto, path, resp.StatusCode, len(got), n, err)
					}
					if resp.ContentLength != int64(n) || len(resp.TransferEncoding) > 0 || resp.Close {
						t.Fatalf("%s %s: framed with length %d, TE %v, close %v", proto, path, resp.ContentLength, resp.TransferEncoding, resp.Close)
					}
					if resp.Header.Get("X-Trailer") != "" {
						t.Fatalf("%s %s: trailer merged", proto, path)
					}
				}
			}
		}
		c.Close()
	}
	pipesClosed(t, px)
}
