package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"testing"
)

// Found by review. What was wrong: a spliced answer that ends its connection (the client sent
// "Connection: close", or spoke HTTP/1.0) never gives its pipe back to the
// pool, although the pipe was written out whole: the pipe stays lent to the
// closed connection (netconn.Conn.Close keeps what was lent) until the
// garbage collector finds it, and each such answer takes a new pipe
// (pipe2, F_SETPIPE_SZ, two descriptors, an allocation). In a process that
// allocates little (sluice's steady state allocates nothing), closed
// connections' pipes pile up to the bound of 1024 pipes (2048
// descriptors, and 32 pages each against fs.pipe-user-pages-soft), and
// past it splicing stops until a collection. README, Design: the body
// moves "into a pooled pipe"; a keep-alive client's answers reuse one
// pipe. Expected: after 30 such answers, done one after another, about as
// few pipes open as for keep-alive answers (1 or 2); was: 30.
// Found by review in session 20.
func TestSplicedClosingAnswersGiveTheirPipesBack(t *testing.T) {
	b := patternBackend(t)
	px := startProxy(t, poolYAML("round_robin", []*testBackend{b}, nil))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	const n = 64 << 10
	for _, how := range []string{"HTTP/1.1\r\nConnection: close", "HTTP/1.0"} {
		for i := range 15 {
			conn, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /%d/%d %s\r\nHost: x\r\n\r\n", n, i, how)
			got, err := io.ReadAll(conn) // to the proxy's close
			conn.Close()
			if err != nil || !bytes.HasSuffix(got, seeded(n, i)) || !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
				t.Fatalf("%q answer %d: %d bytes, %v", how, i, len(got), err)
			}
		}
	}
	// Given back, the pipes are reused: 1 or 2 open. (The race detector's
	// sync.Pool drops a quarter of what is put, which new pipes replace:
	// about 8 more then. Not given back: 30.)
	if open := px.proxy.pipes.open.Load(); open > 20 {
		t.Fatalf("%d pipes open after 30 spliced answers written whole, one after another, on connections that closed (keep-alive answers reuse 1)", open)
	}
}
