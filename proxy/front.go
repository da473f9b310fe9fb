package proxy

import (
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"sluice/config"
	"sluice/netconn"
)

// keptBodyLimit is the largest body buffer a client connection keeps
// between requests. Below it a body buffer is reused, so the benchmark's
// 64 KiB responses and 16 KiB POSTs still allocate nothing; above it each
// request allocates its body afresh, which is small next to moving it.
const keptBodyLimit = 128 << 10

// ClientTimeouts gives ln cfg's client timeouts (timeouts.client_read,
// client_write and idle), which the connections it accepts apply; the
// server from NewFrontServer sets none. Call it before serving.
func ClientTimeouts(ln *netconn.Listener, cfg *config.Config) {
	ln.ReadTimeout, ln.WriteTimeout, ln.IdleTimeout = cfg.Timeouts.ClientRead, cfg.Timeouts.ClientWrite, cfg.Timeouts.Idle
}

// NewFrontServer is the fasthttp server that serves p to clients with
// cfg's limits and timeouts; cmd/sluice adds its connection counting, the
// tests serve it as it is, so that they test the settings it runs with.
// Serve it on a netconn.Listener given cfg's ClientTimeouts: it has no
// client timeouts of its own.
func NewFrontServer(p *Proxy, cfg *config.Config, log zerolog.Logger) *fasthttp.Server {
	// fasthttp's server keeps each connection's request and response
	// body buffers between requests, at the largest size they reached,
	// for as long as the connection stays open: a client that uploaded
	// or downloaded 8 MiB once and then idles would hold that memory for
	// timeouts.idle. Bodies above keptBodyLimit are let go when their
	// request is done instead. The limit is fasthttp's, process-wide;
	// every server and client in sluice wants the same.
	fasthttp.SetBodySizePoolLimit(keptBodyLimit, keptBodyLimit)
	return &fasthttp.Server{
		Handler:               p.Handle,
		Logger:                Logger{Log: log},
		ErrorHandler:          ServerErrorHandler,
		Name:                  "",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// No ReadTimeout, WriteTimeout or IdleTimeout: the listener's
		// connections apply cfg's (ClientTimeouts). fasthttp would read
		// the clock and set a deadline three times per request; the
		// connections set one only when a read or write has to wait
		// (paired A/B: 1-2% less CPU per request; README, Performance).
		ReadBufferSize: cfg.Limits.MaxHeaderBytes,
		// The handler decides which responses netconn may hold
		// (HoldNextWrite) from this size: they must be longer than it.
		WriteBufferSize:    ClientWriteBufferSize,
		MaxRequestBodySize: cfg.Limits.MaxBodyBytes,
		// Beyond it fasthttp answers 503 and closes (nginx's
		// worker_connections and HAProxy's maxconn make a connection
		// wait in the listen queue instead).
		Concurrency:     cfg.Limits.MaxClientConns,
		ExpectHandler:   FrontExpectHandler(cfg.Limits.MaxBodyBytes),
		HeaderReceived:  HeadReceived,
		CloseOnShutdown: true,
		// Cookies and multipart forms are the backend's business.
		DisablePreParseMultipartForm: true,
		// ReduceMemoryUsage stays off: it would lend the request context
		// and buffers per request, not per connection, but fasthttp's
		// wait for the next request then allocates (a 1-byte read buffer
		// that escapes), and the CPU it saved was within the noise
		// (README, Performance). It would also blind netconn's watch for
		// bare-LF request heads, which needs the first read of a head to
		// hold its request line; fasthttp's wait then reads 1 byte.
	}
}
