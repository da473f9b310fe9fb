package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sendingClient writes head and then a body of bodyLen bytes on a new
// connection to addr from a goroutine, while it reads the answer, as an
// HTTP client uploading does. It returns the answer's status and whether
// the connection was reset (the read or the writes met ECONNRESET or
// EPIPE) instead of closed with a FIN after the answer.
func sendingClient(t *testing.T, addr, head string, bodyLen int) (status int, reset bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	writeErr := make(chan error, 1)
	go func() {
		if _, err := io.WriteString(conn, head); err != nil {
			writeErr <- err
			return
		}
		chunk := make([]byte, 32<<10)
		for sent := 0; sent < bodyLen; sent += len(chunk) {
			if _, err := conn.Write(chunk[:min(len(chunk), bodyLen-sent)]); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, rerr := br.ReadByte() // the end of the connection: FIN or reset
	var werr error
	select {
	case werr = <-writeErr:
	case <-time.After(200 * time.Millisecond):
		conn.Close() // the server reads on until the client closes
		werr = <-writeErr
	}
	reset = errors.Is(rerr, syscall.ECONNRESET) || errors.Is(werr, syscall.ECONNRESET) || errors.Is(werr, syscall.EPIPE)
	return resp.StatusCode, reset
}

// TestErrorAnswerReachesAClientStillSending: a request refused before
// its body was read (too large, malformed) gets its answer and then a
// clean close, not a reset, while the client is still sending: the close
// lingers (netconn.Conn.LingerOnClose). Go's HTTP client reports a reset
// met while uploading instead of the answer.
func TestErrorAnswerReachesAClientStillSending(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+"limits: { max_header_bytes: 4096, max_body_bytes: 1024 }\n")
	const body = 4 << 20
	tests := []struct {
		name, head string
		want       int
	}{
		{"body over the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n", 413},
		{"headers over the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431},
		{"malformed header", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\nNo-Colon-Here\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 10 {
				code, reset := sendingClient(t, px.addr, tt.head, body)
				if code != tt.want || reset {
					t.Fatalf("status %d, reset %v; want %d and a clean close", code, reset, tt.want)
				}
			}
		})
	}
	t.Run("net/http client", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		for range 10 {
			resp, err := c.Post("http://"+px.addr+"/", "text/plain", bytes.NewReader(make([]byte, body)))
			if err != nil {
				t.Fatalf("POST over the body limit: %v, want a 413", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 413 {
				t.Fatalf("POST over the body limit = %d, want 413", resp.StatusCode)
			}
		}
	})
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
}

// TestErrorAnswerAfterAnIdleWait: a request refused on a kept-alive
// connection long after the last response still gets its answer: fasthttp
// does not set a write deadline for an error answer, and the one the last
// response left (timeouts.client_write after it) has passed.
func TestErrorAnswerAfterAnIdleWait(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil)+
		"limits: { max_body_bytes: 1024 }\ntimeouts: { client_write: 200ms }\n")
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for _, step := range []struct {
		raw  string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("a", 2048), 413},
	} {
		if step.want != 200 {
			time.Sleep(500 * time.Millisecond) // past the write deadline the last answer left
		}
		if _, err := io.WriteString(conn, step.raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer to %.20q: %v, want %d", step.raw, err, step.want)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Fatalf("answer to %.20q = %d, want %d", step.raw, resp.StatusCode, step.want)
		}
	}
}
