package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRequestTrailerNeverMerged: whatever the head holds and whatever
// name a chunked request's trailer field has, the field never reaches
// the backend's head: the handler's steps (scanRequest, rejected,
// hasTrailerNames, dropTrailers, prepareRequest) either refuse the request or send it
// without the trailer's value. (Found by review in session 24: behind an
// empty User-Agent, a trailer's User-Agent went upstream as the header.)
func FuzzRequestTrailerNeverMerged(f *testing.F) {
	for _, s := range [][2]string{
		{"User-Agent:\r\n", "User-Agent"},
		{"User-Agent: \r\nTrailer: User-Agent\r\n", "User-Agent"},
		{"User-Agent:\r\n \r\n", "User-Agent"},
		{"X-A:\r\n", "X-A"},
		{"Trailer: X-T\r\nX-T: head\r\n", "X-T"},
		{"Cookie: a=b\r\n", "Cookie"},
		{"", "X-Smuggled"},
		{"Content-Type:\r\n", "Content-Type"},
	} {
		f.Add(s[0], s[1])
	}
	const mark = "zzTRAILERzz"
	f.Fuzz(func(t *testing.T, headers, name string) {
		raw := "POST /p HTTP/1.1\r\nHost: example.com\r\n" + headers +
			"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + name + ": " + mark + "\r\n\r\n"
		ctx := new(fasthttp.RequestCtx)
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Skip("not a request fasthttp accepts")
		}
		h := &ctx.Request.Header
		if strings.Contains(string(h.RawHeaders()), mark) {
			t.Skip("the mark is in the head itself")
		}
		found := scanRequest(h.RawHeaders())
		if code, _ := rejected(ctx, found); code != 0 {
			return
		}
		trailers := hasTrailerNames(h, found)
		if tooManyNames(h, found) || trailers && tooManyTrailers(h) {
			return
		}
		var ok bool
		if trailers {
			if _, ok = dropTrailers(h, h.RawHeaders(), nil); !ok {
				return
			}
		}
		prepareRequest(ctx, h.Host(), found, fuzzForwarding(0), nil)
		if out := ctx.Request.String(); strings.Contains(out, mark) {
			t.Fatalf("a trailer field reached the upstream request:\nraw:\n%q\nupstream:\n%q", raw, out)
		}
	})
}
