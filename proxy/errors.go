package proxy

import (
	"errors"
	"net"
	"strconv"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
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
	code, msg := ClientErrorStatus(err)
	ctx.Error(strconv.Itoa(code)+" "+msg+"\n", code)
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
