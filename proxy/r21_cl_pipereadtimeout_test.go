package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// Found by review. What was wrong: a request whose head comes in the same read as the end of the
// request before it (pipelined right behind an upload) is read under
// that earlier request's client_read deadline, not one of its own.
// README (Configuration reference, timeouts.client_read): a later
// request is read within client_read "from its first byte", and the one
// exception it names ("a request that came partly pipelined behind
// another waits for its rest under timeouts.idle ... so it has at most
// idle + client_read") gives such a request more time, never less.
// Here, with client_read 4s and idle 10s, request 2's first byte comes
// 2 s after request 1's and the rest of its body 2.5 s later: within
// client_read of request 2's first byte, so it must be served (nginx's
// client_body_timeout, between reads, would not cut it either). It got
// 408 when request 1's deadline passed, 2 s after request 2 began.
//
// Where: netconn/conn.go, Read starts a read phase with a fresh deadline
// (startTurn) only on the first read after a write; fasthttp's server
// (server.go serveConn) leaves request 1's answer in its write buffer
// while a pipelined request waits in its reader, so no write comes
// between request 1's body and request 2's, readSet stays true and
// readStep never sets client_read for request 2's body. proxy.Handle
// answers request 1 and could tell the connection a request ended (a
// flag, no clock reading): the next Read without a write in between
// would then start phaseRequest with readSet false and read.want none,
// so that request 2's first wait sets client_read afresh.
func TestPipelinedUploadOwnReadTimeout(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, "timeouts: { client_read: 4s, idle: 10s }\n"+poolYAML("round_robin", []*testBackend{b}, nil))
	c, br := dialProxy(t, px.addr)
	getOn(t, c, br, "/") // a kept-alive connection: the next requests are later ones
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	first := time.Now()
	// Request 1, an upload whose body is still coming.
	if _, err := io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // request 1's deadline (client_read 4s) is 2 s off
	// The end of request 1's body and, pipelined behind it in the same
	// write, request 2's head and the first byte of its body.
	if _, err := io.WriteString(c, "cdPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nw"); err != nil {
		t.Fatal(err)
	}
	second := time.Now()
	// Past request 1's deadline, 1.5 s within client_read of request 2's
	// first byte.
	time.Sleep(2500 * time.Millisecond)
	_, _ = io.WriteString(c, "xyz") // (a refused connection lingers: this write succeeds)
	for i := 1; i <= 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("answer %d: %d, want 200: request 2, whose first byte came %v after request 1's, was cut at request 1's client_read deadline (its rest came %v after its first byte, client_read 4s)",
				i, resp.StatusCode, second.Sub(first).Round(10*time.Millisecond), 2500*time.Millisecond)
		}
	}
	if b.hits.Load() != 3 {
		t.Errorf("backend saw %d requests, want 3", b.hits.Load())
	}
}
