package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrorKind sorts failed upstream attempts for sluice_upstream_errors_total.
type ErrorKind uint8

// The error kinds; anything out of range counts as KindOther. The split
// that matters to an operator is whether the request reached the backend:
// KindConnect never did (safe to retry anywhere), KindTimeout and KindReset
// did.
const (
	KindOther   ErrorKind = iota // anything else (no free connection, ...)
	KindConnect                  // dialing failed, was refused or timed out
	KindTimeout                  // sent, but no response in time
	KindReset                    // the connection broke mid-exchange
	// KindIdle: a kept-alive connection the backend had closed, or sent
	// unrequested bytes on, while idle, found before the request was
	// written; or one that broke as an idempotent request went out,
	// before any answer. The request then went out on another
	// connection. Not a failed request, but a sign of a keep-alive
	// timeout at or below upstream_idle or of a backend that writes more
	// than its responses.
	KindIdle
	numKinds
)

var kindNames = [numKinds]string{"other", "connect", "timeout", "reset", "idle"}

func (k ErrorKind) String() string {
	if k >= numKinds {
		k = KindOther
	}
	return kindNames[k]
}

// State is a backend's state for sluice_backend_state. A closed set rather
// than a free string: every value is a series, so the label stays bounded.
type State uint8

// The backend states.
const (
	StateHealthy State = iota
	StateUnhealthy
	StateDraining
	StateEjected
	numStates
)

var stateNames = [numStates]string{"healthy", "unhealthy", "draining", "ejected"}

func (s State) String() string {
	if s >= numStates {
		return "unknown"
	}
	return stateNames[s]
}

// BackendSeries holds every resolved series of one backend of one pool.
// Methods are safe for concurrent use and a nil *BackendSeries does nothing.
type BackendSeries struct {
	upstream prometheus.Observer
	errors   [numKinds]prometheus.Counter
	up       prometheus.Gauge
	weight   prometheus.Gauge
	state    [numStates]prometheus.Gauge
	checks   [2]prometheus.Counter // [failure, success]
	ejected  prometheus.Counter
	// conns reports open upstream connections at scrape time.
	conns atomic.Pointer[func() int]
}

// Backend returns the series of backend (its address) in pool, creating
// them at zero on first use so that rates start from a known value. It
// returns the same pointer for the same pair until ForgetBackend. Call it
// on the control plane (when building a snapshot), not per request.
func (m *Metrics) Backend(pool, backend string) *BackendSeries {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := pair{pool, backend}
	if b, ok := m.backends[k]; ok {
		return b
	}
	b := &BackendSeries{
		upstream: m.upDuration.WithLabelValues(pool, backend),
		up:       m.backendUp.WithLabelValues(pool, backend),
		weight:   m.weight.WithLabelValues(pool, backend),
		ejected:  m.ejections.WithLabelValues(pool, backend),
	}
	for i := range b.errors {
		b.errors[i] = m.upErrors.WithLabelValues(pool, backend, kindNames[i])
	}
	for i := range b.state {
		b.state[i] = m.state.WithLabelValues(pool, backend, stateNames[i])
	}
	b.checks[0] = m.healthChecks.WithLabelValues(pool, backend, "failure")
	b.checks[1] = m.healthChecks.WithLabelValues(pool, backend, "success")
	m.backends[k] = b
	return b
}

// ObserveUpstream records the time an upstream took to respond.
// Request path.
func (b *BackendSeries) ObserveUpstream(d time.Duration) {
	if b == nil {
		return
	}
	b.upstream.Observe(d.Seconds())
}

// UpstreamError counts one failed attempt. Request path.
func (b *BackendSeries) UpstreamError(kind ErrorKind) {
	if b == nil {
		return
	}
	if kind >= numKinds {
		kind = KindOther
	}
	b.errors[kind].Inc()
}

// SetUp sets sluice_backend_up.
func (b *BackendSeries) SetUp(up bool) {
	if b == nil {
		return
	}
	setBool(b.up, up)
}

// setBool sets g to 1 for true, 0 for false.
func setBool(g prometheus.Gauge, on bool) {
	if on {
		g.Set(1)
	} else {
		g.Set(0)
	}
}

// SetWeight sets the effective weight.
func (b *BackendSeries) SetWeight(w float64) {
	if b == nil {
		return
	}
	b.weight.Set(w)
}

// SetState sets s to 1 and the other states to 0. An unknown s sets all
// four to 0.
func (b *BackendSeries) SetState(s State) {
	if b == nil {
		return
	}
	for i, g := range b.state {
		if State(i) == s {
			g.Set(1)
		} else {
			g.Set(0)
		}
	}
}

// HealthCheck counts one active check by its result.
func (b *BackendSeries) HealthCheck(ok bool) {
	if b == nil {
		return
	}
	if ok {
		b.checks[1].Inc()
	} else {
		b.checks[0].Inc()
	}
}

// Ejected counts one outlier ejection.
func (b *BackendSeries) Ejected() {
	if b == nil {
		return
	}
	b.ejected.Inc()
}

// SetConnsFunc sets the function that sluice_upstream_connections reads at
// scrape time, such as the backend client's ConnsCount. It is
// called with the metrics lock held, so it must not call back into Metrics.
// nil removes the series.
func (b *BackendSeries) SetConnsFunc(f func() int) {
	if b == nil {
		return
	}
	if f == nil {
		b.conns.Store(nil)
		return
	}
	b.conns.Store(&f)
}

// RouteSeries holds a route's latency histogram.
type RouteSeries struct {
	duration prometheus.Observer
}

// Route returns the series of route, the same pointer until ForgetRoute.
// Control plane.
func (m *Metrics) Route(route string) *RouteSeries {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes[route]; ok {
		return r
	}
	r := &RouteSeries{duration: m.reqDuration.WithLabelValues(route)}
	m.routes[route] = r
	return r
}

// ObserveDuration records the client-seen duration of one request. Request
// path.
func (r *RouteSeries) ObserveDuration(d time.Duration) {
	if r == nil {
		return
	}
	r.duration.Observe(d.Seconds())
}

// RequestCounters is one (route, pool, backend) row of
// sluice_requests_total, one counter per status class.
//
// The code label is the class (1xx to 5xx), not the exact status: an
// upstream may answer any of hundreds of codes, and each would multiply the
// row's series; five classes are what alerts and error ratios use.
type RequestCounters struct {
	class [5]prometheus.Counter
}

var classNames = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Requests returns the counters for requests answered on route through
// backend of pool, the same pointer until the route, pool or backend is
// forgotten. Use backend "" for requests that reached no backend, and
// route "" and pool "" for requests that matched no route. All five classes
// are created at zero. Control plane.
func (m *Metrics) Requests(route, pool, backend string) *RequestCounters {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := row{route, pool, backend}
	if c, ok := m.rows[k]; ok {
		return c
	}
	c := &RequestCounters{}
	for i := range c.class {
		c.class[i] = m.requests.WithLabelValues(route, pool, backend, classNames[i])
	}
	m.rows[k] = c
	return c
}

// Inc counts one request answered with status. A status outside 100–599
// counts as 5xx: it is no valid HTTP status, so the exchange failed.
// Request path.
func (c *RequestCounters) Inc(status int) {
	if c == nil {
		return
	}
	i := status/100 - 1
	if status < 100 || i >= len(c.class) {
		i = len(c.class) - 1
	}
	c.class[i].Inc()
}

// PoolSeries holds a pool's counters.
type PoolSeries struct {
	retries   prometheus.Counter
	noBackend prometheus.Counter
	panicMode prometheus.Gauge
}

// Pool returns the series of pool, the same pointer until ForgetPool.
// Control plane.
func (m *Metrics) Pool(pool string) *PoolSeries {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.pools[pool]; ok {
		return p
	}
	p := &PoolSeries{
		retries:   m.retries.WithLabelValues(pool),
		noBackend: m.noBackend.WithLabelValues(pool),
		panicMode: m.panicMode.WithLabelValues(pool),
	}
	m.pools[pool] = p
	return p
}

// Retry counts one attempt after the first. Request path.
func (p *PoolSeries) Retry() {
	if p == nil {
		return
	}
	p.retries.Inc()
}

// SetPanic sets sluice_pool_panic_mode. Control plane.
func (p *PoolSeries) SetPanic(on bool) {
	if p == nil {
		return
	}
	setBool(p.panicMode, on)
}

// NoBackend counts one request the pool had no backend for. Request path.
func (p *PoolSeries) NoBackend() {
	if p == nil {
		return
	}
	p.noBackend.Inc()
}

// ForgetBackend deletes every series of backend in pool: its requests_total
// rows on any route, upstream histogram, errors, up, weight, state, health
// checks, ejections and connections. Call it once the backend has left and
// finished draining, so no stale series stays behind. Handles still held
// by requests in flight keep working but count into series no longer
// exported; a later Backend or Requests call starts fresh series at zero.
func (m *Metrics) ForgetBackend(pool, backend string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetBackend(pool, backend)
}

func (m *Metrics) forgetBackend(pool, backend string) {
	delete(m.backends, pair{pool, backend})
	for k := range m.rows {
		if k.pool == pool && k.backend == backend {
			delete(m.rows, k)
		}
	}
	l := prometheus.Labels{"pool": pool, "backend": backend}
	m.requests.DeletePartialMatch(l)
	m.upDuration.Delete(l)
	m.upErrors.DeletePartialMatch(l)
	m.backendUp.Delete(l)
	m.weight.Delete(l)
	m.state.DeletePartialMatch(l)
	m.healthChecks.DeletePartialMatch(l)
	m.ejections.Delete(l)
}

// ForgetRoute deletes the route's latency histogram and its requests_total
// rows. Call it when a reload removes the route.
func (m *Metrics) ForgetRoute(route string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.routes, route)
	for k := range m.rows {
		if k.route == route {
			delete(m.rows, k)
		}
	}
	m.reqDuration.DeleteLabelValues(route)
	m.requests.DeletePartialMatch(prometheus.Labels{"route": route})
}

// ForgetRoutePool deletes the requests_total rows of route through pool,
// keeping the route's latency histogram and its rows through other pools.
// Call it when a reload points the route at another pool, once its
// requests through the old one have finished.
func (m *Metrics) ForgetRoutePool(route, pool string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.rows {
		if k.route == route && k.pool == pool {
			delete(m.rows, k)
		}
	}
	m.requests.DeletePartialMatch(prometheus.Labels{"route": route, "pool": pool})
}

// ForgetPool deletes the pool's counters, every series of its backends and
// every requests_total row through it. Call it when a reload removes the
// pool (and after its backends drained).
func (m *Metrics) ForgetPool(pool string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.backends {
		if k.pool == pool {
			m.forgetBackend(k.pool, k.backend)
		}
	}
	for k := range m.rows {
		if k.pool == pool {
			delete(m.rows, k)
		}
	}
	delete(m.pools, pool)
	l := prometheus.Labels{"pool": pool}
	m.retries.Delete(l)
	m.noBackend.Delete(l)
	m.panicMode.Delete(l)
	m.discoveryErr.Delete(l)
	// Rows with backend "" belong to the pool, not to any backend.
	m.requests.DeletePartialMatch(l)
}
