package proxy

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"

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
	client  *fasthttp.HostClient
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

// upstreamBufferSize is the upstream client's read and write buffer size;
// netconn.NewClient takes a write shorter than it for the end of a request.
const upstreamBufferSize = 64 << 10

// newUpstream builds the client for one backend; dial, when not nil,
// replaces TCP dialing (in-memory benchmarks).
func newUpstream(pool, addr string, s clientSettings, dial func(string) (net.Conn, error), outlierThreshold int) *upstream {
	dialer := &net.Dialer{Timeout: s.connect, KeepAlive: 30 * time.Second}
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }
	}
	inner := dial
	// fasthttp sets two deadlines per exchange: keep them lazily; and
	// wait for the response before the read that fetches it.
	dial = func(addr string) (net.Conn, error) {
		c, err := inner(addr)
		if err != nil {
			return nil, err
		}
		return netconn.NewClient(c, upstreamBufferSize), nil
	}
	return &upstream{
		backend: balancer.NewBackend(pool, addr),
		outlier: health.NewOutlier(outlierThreshold),
		client: &fasthttp.HostClient{
			Addr: addr,
			Dial: dial,
			// Retries are sluice's own policy (see handler); fasthttp's hidden
			// idempotent retries would double-count and hide failures.
			MaxIdemponentCallAttempts: 1,
			MaxConns:                  s.maxConns,
			MaxIdleConnDuration:       s.idle,
			// The response timeout is one deadline per exchange, set by
			// the handler (DoTimeout), so no per-read/per-write ones here.
			MaxResponseBodySize:      s.maxResponseBody,
			NoDefaultUserAgentHeader: true,
			DisablePathNormalizing:   true,
			// Buffers are pooled per request in flight, not held per
			// connection, so they can be large: a 16 KiB POST then goes
			// upstream in one write, and a large response is read in
			// few syscalls (measured: scenario d of make bench).
			ReadBufferSize:  upstreamBufferSize,
			WriteBufferSize: upstreamBufferSize,
		},
	}
}
