package proxy

import (
	"net"
	"time"

	"sluice/balancer"
	"sluice/config"
	"sluice/health"
	"sluice/metrics"
	"sluice/netconn"
)

// upstream is one backend as the data plane sees it: the balancer's view
// (identity, atomic counters) plus the HTTP client with its keep-alive
// connections. It is shared by every snapshot that lists the backend, so a
// rebuild never drops its connections.
type upstream struct {
	backend *balancer.Backend
	client  *upClient
	// outlier counts consecutive failures on real traffic (passive
	// health); it trips once per streak.
	outlier *health.Outlier
	// series are the backend's metrics (nil when metrics are off).
	series *metrics.BackendSeries
}

// clientSettings are the parts of the config an upstream client is built
// from; a change to them means a new client.
type clientSettings struct {
	connect, response, idle time.Duration
	maxConns                int
	maxResponseBody         int
}

func settingsOf(c *config.Config) clientSettings {
	return clientSettings{
		connect:         c.Timeouts.Connect,
		response:        c.Timeouts.Response,
		idle:            c.Timeouts.UpstreamIdle,
		maxConns:        c.Limits.MaxConnsPerBackend,
		maxResponseBody: c.Limits.MaxResponseBytes,
	}
}

// upstreamReadBufferSize is the upstream client's read buffer. Read
// buffers are pooled and taken only once a response is readable, so a few
// serve every request. A response head and a short body come in one read
// through it; a body part at least this long is read past it, straight
// into the response's body buffer (bufio.Reader reads into the caller's
// slice when that is as long as its buffer), so a long body is not read
// into this buffer and then copied. At 64 KiB every body under 64 KiB took
// that copy: 16 KiB cost 6.7% less CPU per request with 64 KiB responses,
// the same with 1 KiB ones (bench/pair.sh; README, Performance).
const upstreamReadBufferSize = 16 << 10

// upstreamWriteBufferSize is the upstream client's write buffer, which a
// request holds from its first write until its response is readable: one
// per request in flight, long polls included (10,000 waiting requests hold
// 160 MiB of them, not 640 MiB as at 64 KiB). It takes a request head
// (limits.max_header_bytes is 8 KiB by default) and a body under
// minDirectBody; longer bodies go out from where they lie (writeRequest),
// longer heads in more than one write. netconn.NewClient takes a write
// shorter than it for the end of a request.
const upstreamWriteBufferSize = 16 << 10

// newUpstream builds the client for one backend; dial, when not nil,
// replaces TCP dialing (in-memory benchmarks); bufs pools the exchanges'
// buffers (newUpBuffers).
func newUpstream(pool, addr string, s clientSettings, dial func(string) (net.Conn, error), outlierThreshold int, bufs *upBufferPools) *upstream {
	dialer := &net.Dialer{Timeout: s.connect, KeepAlive: 30 * time.Second}
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }
	}
	inner := dial
	// One deadline per exchange, kept lazily; and the wait for the
	// response made before the read that fetches it.
	dial = func(addr string) (net.Conn, error) {
		c, err := inner(addr)
		if err != nil {
			return nil, err
		}
		return netconn.NewClient(c, upstreamWriteBufferSize), nil
	}
	return &upstream{
		backend: balancer.NewBackend(pool, addr),
		outlier: health.NewOutlier(outlierThreshold),
		client:  newUpClient(addr, dial, s, bufs),
	}
}
