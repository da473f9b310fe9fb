package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzPeekedUserAgent: for a request head fasthttp takes, peekedFields
// says how many User-Agent lines fasthttp's PeekAll returns (it keeps an
// empty one in storage of its own and leaves it out), which dropTrailers
// weighs against the lines of the raw head: a wrong count refuses a good
// request or lets a trailer's User-Agent through as a header. Found to
// have no target of its own by session 25's fuzz review.
func FuzzPeekedUserAgent(f *testing.F) {
	for _, s := range []string{
		"User-Agent: a\r\n",
		"User-Agent:\r\n",
		"User-Agent: \r\n",
		"user-agent:\r\n\t x\r\n",
		"User-Agent:\r\n \r\n",
		"User-Agent :\r\n",
		"X: y\r\n User-Agent: z\r\n",
		"USER-AGENT:\t\r\n",
		"User-Agent: a\n",
		"User-Agent:\r\n\t\r\n a\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, block []byte) {
		if len(block) > 1<<13 {
			return
		}
		var h fasthttp.RequestHeader
		req := "GET / HTTP/1.1\r\nHost: h\r\n" + string(block) + "\r\n"
		if err := h.Read(bufio.NewReader(strings.NewReader(req))); err != nil {
			return
		}
		raw := h.RawHeaders()
		name := []byte("User-Agent")
		n := countFields(raw, name)
		if n > 1 {
			// Refused with 400 before dropTrailers looks (a repeated
			// User-Agent; fasthttp keeps only the last line's value).
			return
		}
		got := peekedFields(raw, name, n)
		if want := len(h.PeekAll("User-Agent")); got != want {
			t.Fatalf("peekedFields(%q) = %d, fasthttp's PeekAll returns %d", raw, got, want)
		}
	})
}
