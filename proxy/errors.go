package proxy

import (
	"errors"
	"net"

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
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("431 request header fields too large\n", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ctx.Error("413 request body too large\n", fasthttp.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("408 request timeout\n", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("400 bad request\n", fasthttp.StatusBadRequest)
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
