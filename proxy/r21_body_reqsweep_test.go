package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// r21HashBackend answers each request with "<method> <len> <sha256>" of
// the body it got, and whether a Transfer-Encoding, Trailer or trailer
// field reached it; it waits before it reads the body when the path
// says /slow.
func r21HashBackend(t *testing.T) string {
	ln := serveRaw(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReaderSize(c, 4<<10)
		for {
			var req fasthttp.Request
			if err := req.Header.Read(br); err != nil {
				return
			}
			if strings.HasPrefix(string(req.URI().Path()), "/slow") {
				time.Sleep(50 * time.Millisecond)
			}
			if err := req.ContinueReadBody(br, 0, false); err != nil {
				return
			}
			sum := sha256.Sum256(req.Body())
			extra := ""
			if len(req.Header.Peek("Transfer-Encoding")) > 0 || len(req.Header.Peek("Trailer")) > 0 || len(req.Header.Peek("X-T")) > 0 {
				extra = " extra"
			}
			body := fmt.Sprintf("%s %d %s%s", req.Header.Method(), len(req.Body()), hex.EncodeToString(sum[:]), extra)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// r21Chunk frames b in chunks of the given size, with extensions, and a
// trailer field.
func r21Chunk(b []byte, size int) []byte {
	var w bytes.Buffer
	for i := 0; i < len(b); i += size {
		j := min(i+size, len(b))
		fmt.Fprintf(&w, "%X;n=%d;q=\"a b\"\r\n", j-i, i)
		w.Write(b[i:j])
		w.WriteString("\r\n")
	}
	w.WriteString("0;end\r\nX-T: 1\r\n\r\n")
	return w.Bytes()
}

// TestRequestBodySweep: request bodies of every size around the
// proxy's thresholds (the 1 KiB direct write, the 4 KiB buffers, the
// 128 KiB kept-body limit, max_body_bytes itself), sent with a
// Content-Length or chunked with extensions and a trailer, on POST, PUT,
// GET, DELETE and OPTIONS, several pipelined on one connection, reach a
// backend that reads slowly byte for byte, framed with a Content-Length
// and without trailer fields (passing).
func TestRequestBodySweep(t *testing.T) {
	const limit = 1 << 20
	addr := r21HashBackend(t)
	px := bodiesProxy(t, addr, fmt.Sprintf("limits: { max_body_bytes: %d }\ntimeouts: { response: 10s }\n", limit))
	sizes := []int{0, 1, 1023, 1024, 1025, 4096, 4097, 128 << 10, 128<<10 + 1, limit}
	methods := []string{"POST", "PUT", "GET", "DELETE", "OPTIONS"}
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	type sent struct {
		method string
		body   []byte
	}
	for i, n := range sizes {
		for _, chunked := range []bool{false, true} {
			// Three requests in one write: the one being checked, and
			// two others behind it.
			var wire bytes.Buffer
			var want []sent
			for k, m := range methods[:3] {
				m = methods[(i+k)%len(methods)]
				body := seeded(n, i*10+k)
				path := "/"
				if k == 0 {
					path = "/slow"
				}
				if chunked {
					fmt.Fprintf(&wire, "%s %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n", m, path)
					wire.Write(r21Chunk(body, 3000+k))
				} else {
					fmt.Fprintf(&wire, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", m, path, n)
					wire.Write(body)
				}
				want = append(want, sent{m, body})
			}
			go func(b []byte) { _, _ = c.Write(b) }(wire.Bytes())
			for _, w := range want {
				a := bodiesRead(br, w.method)
				sum := sha256.Sum256(w.body)
				exp := fmt.Sprintf("%s %d %s", w.method, len(w.body), hex.EncodeToString(sum[:]))
				if a.err != nil || a.status != 200 || string(a.body) != exp {
					t.Fatalf("size %d chunked=%v %s: status %d body %q err %v, want %q", n, chunked, w.method, a.status, a.body, a.err, exp)
				}
			}
		}
	}
	// One byte over the limit: 413, with a Content-Length and chunked.
	for _, chunked := range []bool{false, true} {
		c2, br2 := dialProxy(t, px.addr)
		body := seeded(limit+1, 1)
		var wire []byte
		if chunked {
			wire = append([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), r21Chunk(body, 65536)...)
		} else {
			wire = append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))), body...)
		}
		go func() { _, _ = c2.Write(wire) }()
		req, _ := http.NewRequest("POST", "http://x/", nil)
		resp, err := http.ReadResponse(br2, req)
		if err != nil {
			t.Fatalf("chunked=%v over the limit: %v", chunked, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 413 {
			t.Fatalf("chunked=%v over the limit: status %d, want 413", chunked, resp.StatusCode)
		}
	}
}
