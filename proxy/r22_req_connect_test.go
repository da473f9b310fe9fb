package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// Found by review. What was wrong: a CONNECT that announces a chunked body is not refused from its
// head. README, Error codes: "A request whose head alone decides its
// refusal gets it at once, without its body being read, as nginx answers
// from the head: ... a CONNECT (405) ... that announces a body."
// refusedBeforeBody (errors.go) looks at CONNECT only when the head
// carries a Content-Length (n > 0); with Transfer-Encoding: chunked
// (n == -1) it only checks for Content-Length beside it, so fasthttp goes
// on to read the chunks. A client that sends the head alone waits for
// timeouts.client_read and gets 408 (1 min here: the 5 s read deadline
// fails first); one that goes on with tunnel bytes (a TLS ClientHello, not
// chunk framing) gets fasthttp's "400 bad request" instead of the 405.
// The same head with Content-Length gets the 405 at once
// (TestRefusedHeadAnsweredBeforeBody).
func TestChunkedConnectRefusedFromHead(t *testing.T) {
	b := startBackend(t, "b", nil)
	px := startProxy(t, fmt.Sprintf(`
timeouts: { client_read: 1m }
routes:
  - pool: p
pools:
  p: { algorithm: round_robin, backends: [{ address: %s }] }
`, b.addr()))
	const head = "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct{ name, raw string }{
		{"head alone", head},
		{"then tunnel bytes", head + "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchangeBody(t, px.addr, tt.raw) // 5 s deadline
			if resp.code != 405 || !strings.Contains(resp.body, "CONNECT is not supported") || !resp.close {
				t.Fatalf("got %d %q (close %v), want 405 \"CONNECT is not supported\" and a close", resp.code, resp.body, resp.close)
			}
		})
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
}
