package proxy

import (
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: a backend that refuses an upload early (RFC 9112 §9.5: a final
// answer of 300 or more, then it stops reading without closing) gets its
// answer to the client at once only when what comes before that answer
// fits in 512 bytes and is framed in CRLFs. netconn's look while the
// request's write waits for room (Conn.answered1, netconn/conn.go) peeks
// at most 512 bytes, and refusesBody skips an interim head only when it
// finds its "\r\n\r\n" inside them: a 103 Early Hints with a few Link
// fields (over 512 bytes), or a 100 Continue in bare LFs (which README,
// Forwarding, says sluice reads as CRLFs), hides the 413 behind it for
// good, and the client gets 504 after timeouts.response instead of the
// backend's 413. README, Error codes (502 row): "a request's write that
// waits for room looks at what the backend sent every 100 ms and stops
// on a close, a reset or a final answer of 300 or more (RFC 9112 §9.5),
// past any interim 1xx". The same answer without the interim head, or
// with a short one, passes (TestEarlyAnswerThenHalfOpen). Fix: when an
// interim head does not end within the peeked bytes, peek more (up to
// the 16 KiB head limit) or treat a 1xx whose end is not in sight as
// "look again with a larger buffer"; accept a bare-LF blank line
// (emptyLine) as the end of an interim head.
func TestEarlyRefusalBehindInterimHead(t *testing.T) {
	const body = 16 << 20
	links := strings.Repeat("Link: </static/app-bundle-0123456789.js>; rel=preload; as=script\r\n", 10)
	const final = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
	for _, tt := range []struct{ name, answer string }{
		{"103 over 512 bytes", "HTTP/1.1 103 Early Hints\r\n" + links + "\r\n" + final},
		{"100 and 413 in bare LFs", "HTTP/1.1 100 Continue\n\n" + strings.ReplaceAll(final, "\r\n", "\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln := answeringBackend(t, tt.answer, true)
			// timeouts.response 8s: the 413 must come well before it (the
			// bug gave a 504 after it); a fixed second was overrun by
			// taking in the 16 MiB upload on a loaded machine.
			resp, b, took := postUpload(t, ln.Addr().String(), "8s", body)
			if resp.StatusCode != 413 || !strings.Contains(string(b), "nope") || took > 4*time.Second {
				t.Fatalf("client got %d %q after %v; want the backend's 413 \"nope\" well within timeouts.response (8s)", resp.StatusCode, b, took)
			}
		})
	}
}
