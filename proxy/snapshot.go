package proxy

import (
	"time"

	"sluice/balancer"
	"sluice/config"
	"sluice/metrics"
)

// Snapshot is everything a request needs, immutable once published: the
// route table, each pool's ready upstreams and picker, and the settings of
// the config generation it was built from. Requests load it once from an
// atomic.Pointer and keep it until they finish, so a reload never changes
// the rules under a request in flight.
type Snapshot struct {
	Generation uint64
	// Config is the configuration the snapshot was built from.
	Config *config.Config
	routes routeTable
	pools  map[string]*pool

	preserveHost    bool
	forwarding      forwarding
	responseTimeout time.Duration
	attempts        int

	// metrics is nil when metrics are off; every handle is nil-safe.
	metrics *metrics.Metrics
	// noRoute counts requests that matched no route.
	noRoute *metrics.RequestCounters
}

// pool is one pool's data-plane view.
type pool struct {
	name string
	// targets[:picks] are the upstreams that may take new requests, in
	// the order the picker was built from: Pick returns an index into
	// them. With sticky sessions targets[picks:] are the healthy backends
	// that take none (weight 0, drained through the admin API) but still
	// take the requests of the sessions they have (HAProxy's rule).
	targets []*upstream
	picks   int
	picker  balancer.Picker
	// built is what the picker was built from: targets[:picks]'s
	// backends and weights (after slow start); algorithm and options
	// (without the seed) how. A rebuild with the same keeps the picker.
	built     []balancer.Target
	algorithm string
	options   balancer.Options
	hashKey   config.HashKey
	// hashName is the header/cookie/query name of hashKey, as bytes.
	hashName []byte

	// sticky is the affinity cookie name (stickyName as a string); empty
	// when affinity is off.
	sticky     []byte
	stickyName string
	// stickyIndex maps a backend's opaque id to its index in targets.
	stickyIndex map[string]int
	// stickyCookies are the ready-made Set-Cookie values, one per target.
	stickyCookies [][]byte

	preserveHost bool
	// ewmaWindow is the decay window (ns) when the picker is ewma, which
	// needs each response's latency; 0 otherwise.
	ewmaWindow int64
	// panic is set when the pool balances over unhealthy backends too.
	panic  bool
	series *metrics.PoolSeries
}

// pick chooses a target index for key at now, or -1.
func (p *pool) pick(key uint64, now int64) int {
	return p.picker.Pick(key, now)
}

// pickRetry chooses a target index for a retry (balancer.PickRetry).
func (p *pool) pickRetry(key uint64, now int64) int {
	return balancer.PickRetry(p.picker, key, now)
}
