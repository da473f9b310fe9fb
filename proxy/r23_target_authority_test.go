package proxy

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: an absolute-form request-target whose authority holds bytes no
// host may hold ('"', '<', '{', '|', '\\', '^', '`', '}', '>') is
// forwarded, and its authority becomes the Host the backend gets
// ("GET http://a\"b/x" reached the backend as "Host: a\"b", which Go's
// server answers "400 malformed Host header"; the access log's host says
// a"b too). The same value in a Host field is refused with 400
// (rejected: validHostField), and the target's host replaces Host "for
// all that follows" (README Routing; RFC 9112 §3.2.2), so it must be held
// to the same rule: RFC 3986 §3.2.2 reg-name allows none of these, and
// RFC 9112 §3.2 asks for a 400 for an invalid Host whatever the target's
// form. nginx refuses such a request line ("client sent invalid host in
// request line", 400). Cause: proxy/handler.go checkTarget checks the
// authority only for '@', its length and an empty host name; the
// validHostField check in rejected runs on the Host field before forward
// replaces it with the target's host (targetHost, then SetHostBytes).
// Found while checking how hostile request-line values reach the access
// log (review 23).
func TestAbsoluteFormInvalidAuthorityRefused(t *testing.T) {
	b := startRawBackend(t, cornersOK)
	px := cornersProxy(t, b.ln.Addr().String(), "")
	for _, auth := range []string{`a"b`, "a<b>", "a{b}", "a|b", `a\b`, "a^b", "a`b"} {
		t.Run(auth, func(t *testing.T) {
			b.mu.Lock()
			b.last = ""
			b.mu.Unlock()
			out := rawWire(t, px.addr, "GET http://"+auth+"/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
				t.Errorf("proxy answered %.40q, want 400 for the invalid host in the target", out)
			}
			if got := b.got(); got != "" {
				t.Errorf("backend got %q", got)
			}
		})
	}
	// Control: the same host in the Host field is refused.
	if out := rawWire(t, px.addr, "GET /x HTTP/1.1\r\nHost: a\"b\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400 ") {
		t.Errorf("Host: a\"b answered %.40q, want 400", out)
	}
}
