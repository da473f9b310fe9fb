package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestRefusedHeadAnsweredBeforeBody: a request whose head is refused
// whatever its body gets the refusal at once, as nginx answers from the
// head, not after a read timeout: client_read is a minute and the client
// waits 5 s (rawExchange). With both Content-Length and chunked framing
// the client, going by Content-Length, sends bytes that fasthttp would
// read as the size of a chunk of 2,748 bytes and wait for. A body sent
// whole behind a refused head does not turn the answer into a reset
// (the close lingers). No backend sees any of them.
func TestRefusedHeadAnsweredBeforeBody(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, fmt.Sprintf(`
timeouts: { client_read: 1m }
routes:
  - pool: p
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }] }
`, b.addr()))
	big := strings.Repeat("x", 200<<10)
	tests := []struct {
		name, raw string
		want      int
		wantBody  string
	}{
		{"Content-Length then chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400, "both Content-Length and Transfer-Encoding"},
		{"chunked then Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400, "both Content-Length and Transfer-Encoding"},
		{"both, a chunk in full", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"version, body short of its length", "POST / HTTP/2.0\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 505, "HTTP version not supported"},
		{"CONNECT, body short of its length", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 405, "CONNECT is not supported"},
		{"CONNECT, a large body sent whole", "CONNECT x:443 HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big, 405, "CONNECT is not supported"},
		// Found by review in session 22: a chunked CONNECT waited for its
		// chunks (408 after client_read for the head alone; fasthttp's
		// 400 when tunnel bytes followed).
		{"CONNECT chunked, head alone", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nTransfer-Encoding: chunked\r\n\r\n", 405, "CONNECT is not supported"},
		{"CONNECT chunked, then tunnel bytes", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nTransfer-Encoding: chunked\r\n\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 405, "CONNECT is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchangeBody(t, px.addr, tt.raw)
			if resp.code != tt.want || !strings.Contains(resp.body, tt.wantBody) || !resp.close {
				t.Fatalf("got %d %q (close %v), want %d %q and a close", resp.code, resp.body, resp.close, tt.want, tt.wantBody)
			}
		})
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
}

// refusalAnswer is what rawExchangeBody read back.
type refusalAnswer struct {
	code  int
	body  string
	close bool
}

// rawExchangeBody sends raw on a new connection and reads one answer
// whole, under a 5 s deadline.
func rawExchangeBody(t *testing.T, addr, raw string) refusalAnswer {
	t.Helper()
	resp, body, err := rawExchangeRead(t, addr, raw)
	if err != nil {
		t.Fatal(err)
	}
	return refusalAnswer{code: resp.StatusCode, body: string(body), close: resp.Close}
}
