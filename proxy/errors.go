package proxy

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"sluice/netconn"
)

// isDial reports whether err happened while connecting, before any byte of
// the request was sent.
func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ServerErrorHandler answers requests fasthttp could not parse or accept,
// before any handler (and so any backend) sees them.
func ServerErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	LingerOnClose(ctx)
	code, msg := ClientErrorStatus(err)
	if t, ok := ctx.Conn().(interface{ ReadTimedOut() bool }); ok && t.ReadTimedOut() && code == fasthttp.StatusBadRequest {
		// The read deadline ended the request inside chunked framing,
		// where fasthttp's error hides the timeout (found by review).
		code, msg = fasthttp.StatusRequestTimeout, "request timeout"
	}
	ctx.Error(strconv.Itoa(code)+" "+msg+"\n", code)
	if h, ok := ctx.Conn().(interface{ HeadRequest() bool }); ok && h.HeadRequest() {
		// fasthttp has reset the request, and with it the method: the
		// connection saw the HEAD. Its answer ends with its head.
		ctx.Response.SkipBody = true
	}
}

// HeadReceived is fasthttp's Server.HeaderReceived for the proxy's own
// server, called with a request's head before its body is read. A head
// the handler refuses whatever the body (refusedBeforeBody) is marked as
// having none, so that fasthttp reads no body and the handler refuses it
// at once, from the raw head, which still says what came, as nginx
// answers from the head. Otherwise the refusal would come after the
// body, or after timeouts.client_read when the client's idea of where the
// body ends is not fasthttp's: with both Content-Length and chunked
// framing (request smuggling), fasthttp reads chunks and waits for bytes
// the client, going by Content-Length, never sends. The body left unread
// is drained by the lingering close that follows the refusal.
func HeadReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if refusedBeforeBody(h) {
		h.SetContentLength(0)
	}
	return fasthttp.RequestConfig{}
}

// refusedBeforeBody reports whether h announces a body and will be refused
// whatever it holds (rejected): chunked framing beside Content-Length, a
// CONNECT, a version other than HTTP/1.x. Only heads that announce a body
// are looked at, and only chunked ones scanned: the common request costs
// a length check. (A head refused for other reasons, a bad target say,
// gets its refusal once its body is read.)
func refusedBeforeBody(h *fasthttp.RequestHeader) bool {
	switch n := h.ContentLength(); {
	case n == -1:
		return h.IsConnect() || scanRequest(h.RawHeaders()).smuggled()
	case n > 0:
		return h.IsConnect() || !bytes.Equal(h.Protocol(), strHTTP11) && !bytes.Equal(h.Protocol(), strHTTP10)
	}
	return false
}

// ExpectHandler is fasthttp's Server.ExpectHandler for a server whose
// MaxRequestBodySize is maxBody and whose ErrorHandler is onError: a
// request with Expect: 100-continue that announces a body over the limit
// gets at once the answer onError gives a body over the limit (413, as
// with nginx), instead of 100 Continue (which asks the client to send the
// body) and then that answer. Any other goes on (100); a chunked body is
// held to the limit as it is read. fasthttp closes the connection after
// the answer, as after any onError.
func ExpectHandler(maxBody int, onError func(*fasthttp.RequestCtx, error)) func(*fasthttp.RequestCtx) int {
	return func(ctx *fasthttp.RequestCtx) int {
		if ctx.Request.Header.ContentLength() <= maxBody {
			if c, ok := ctx.Conn().(*netconn.Conn); ok {
				// What the client sends next is the body, which netconn's
				// watch for bare-LF request heads must leave alone.
				c.ExpectBody()
			}
			return fasthttp.StatusContinue
		}
		onError(ctx, fasthttp.ErrBodyTooLarge)
		return ctx.Response.StatusCode()
	}
}

// FrontExpectHandler is ExpectHandler for the proxy's own server: a
// request it would refuse whatever its body (CL+TE, a Transfer-Encoding
// other than chunked, CONNECT, a bad version or target: rejected) is
// answered so at once, as nginx does, instead of with 100 Continue, which
// asks the client to send a body only to refuse it after reading it all.
func FrontExpectHandler(maxBody int) func(*fasthttp.RequestCtx) int {
	expect := ExpectHandler(maxBody, ServerErrorHandler)
	return func(ctx *fasthttp.RequestCtx) int {
		if code, msg := rejected(ctx, scanRequest(ctx.Request.Header.RawHeaders())); code != 0 {
			writeError(ctx, code, msg)
			LingerOnClose(ctx)
			return code
		}
		return expect(ctx)
	}
}

// Refusal is the status and reason (without the code before it or the
// newline after) for a request any of sluice's servers refuses from its
// head alone (rejected: CL+TE, a bad Transfer-Encoding or field name, a
// version other than HTTP/1.x, CONNECT, userinfo, a fragment or a bad
// absolute target); 0 when there is none. The admin API uses it, so that
// it is no laxer than the proxy.
func Refusal(ctx *fasthttp.RequestCtx) (int, string) {
	code, msg := rejected(ctx, scanRequest(ctx.Request.Header.RawHeaders()))
	if code == 0 {
		return 0, ""
	}
	return code, strings.TrimSuffix(msg[len("400 "):], "\n")
}

// LingerOnClose is for a fasthttp ErrorHandler: fasthttp closes the
// connection after the error answer, with the rest of the request (a body
// over the limit, say) perhaps still coming, and the close would then
// reset the connection under the client's feet. On a netconn connection
// the close lingers instead (netconn.Conn.LingerOnClose), so that the
// client reads the answer.
func LingerOnClose(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(*netconn.Conn); ok {
		c.LingerOnClose()
	}
}

// ClientErrorStatus maps an error fasthttp's server met reading a request
// to the status and reason the client gets.
func ClientErrorStatus(err error) (int, string) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		return fasthttp.StatusRequestHeaderFieldsTooLarge, "request header fields too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, netconn.ErrBareLFHead):
		return fasthttp.StatusBadRequest, "request head ends in a bare LF, not CRLF"
	case errors.As(err, &ne) && ne.Timeout():
		return fasthttp.StatusRequestTimeout, "request timeout"
	default:
		return fasthttp.StatusBadRequest, "bad request"
	}
}

// Logger adapts zerolog to fasthttp's logger. fasthttp reports malformed
// client requests through it; they are the client's problem, so they go
// out at debug level.
type Logger struct{ Log zerolog.Logger }

// Printf implements fasthttp.Logger.
func (l Logger) Printf(format string, args ...any) {
	l.Log.Debug().Msgf(format, args...)
}
