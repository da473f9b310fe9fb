// Package metrics is sluice's Prometheus instrumentation.
//
// Everything that involves a label lookup, a map or a lock happens on the
// control plane: when a snapshot is built, the controller asks for handles
// (BackendSeries, RouteSeries, RequestCounters, PoolSeries) that hold the
// already-resolved series. The request path only calls methods on those
// handles, which are atomic adds and histogram observes: no lookups, no
// locks, no allocations.
//
// A nil *Metrics and nil handles are valid and do nothing, so the proxy can
// run (tests, benchmarks) without metrics and without a branch per call site.
package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "sluice"

// buckets are the latency buckets, in seconds, of both duration
// histograms: from 100 µs (a loopback round trip through the proxy) to 30 s
// (beyond any sane upstream timeout), about three per decade.
var buckets = []float64{
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30,
}

// Metrics owns sluice's registry and every series family in it.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests    *prometheus.CounterVec
	reqDuration *prometheus.HistogramVec
	upDuration  *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	downConns   prometheus.Gauge
	// refused reports the client connections refused so far (the
	// server's own count, read at scrape time); nil reports 0.
	refused      atomic.Pointer[func() uint64]
	reqBytes     prometheus.Counter
	respBytes    prometheus.Counter
	backendUp    *prometheus.GaugeVec
	weight       *prometheus.GaugeVec
	state        *prometheus.GaugeVec
	healthChecks *prometheus.CounterVec
	ejections    *prometheus.CounterVec
	upErrors     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	noBackend    *prometheus.CounterVec
	panicMode    *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	reloadOK     [2]prometheus.Counter // [failure, success]
	lastReload   prometheus.Gauge
	generation   prometheus.Gauge
	logDropped   prometheus.Counter
	discoveryErr *prometheus.CounterVec

	// mu guards the handle maps. Only the control plane and scrapes take
	// it; the request path holds handles and never comes here.
	mu       sync.Mutex
	backends map[pair]*BackendSeries
	routes   map[string]*RouteSeries
	pools    map[string]*PoolSeries
	rows     map[row]*RequestCounters
}

type pair struct{ pool, backend string }

type row struct{ route, pool, backend string }

// New returns metrics on a fresh registry (never the process-wide default
// one, so that tests and several instances do not collide), with the Go
// runtime and process collectors and sluice_build_info{version} = 1.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg:      reg,
		backends: map[pair]*BackendSeries{},
		routes:   map[string]*RouteSeries{},
		pools:    map[string]*PoolSeries{},
		rows:     map[row]*RequestCounters{},
	}
	f := factory{reg}

	m.requests = f.counterVec("requests_total",
		"Requests answered, by route, pool, backend and status class (1xx to 5xx). "+
			"backend is empty when no backend was picked; route and pool are empty when no route matched or the request was refused before routing (400, 405, 505).",
		"route", "pool", "backend", "code")
	m.reqDuration = f.histogramVec("request_duration_seconds",
		"Time from reading the request to having the response ready for the client, by route.",
		"route")
	m.upDuration = f.histogramVec("upstream_duration_seconds",
		"Time from the start of the attempt (connecting included; the first attempt's from the request's arrival) to having the upstream response, by backend, for the answers passed on.",
		"pool", "backend")
	m.inFlight = f.gauge("requests_in_flight", "Requests being served now.")
	m.downConns = f.gauge("downstream_connections", "Open client connections.")
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "downstream_connections_refused_total",
		Help:      "Client connections refused over limits.max_client_conns: answered 503 and closed before any request was read.",
	}, func() float64 {
		if f := m.refused.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	m.reqBytes = f.counter("request_bytes_total", "Request body bytes received from clients.")
	m.respBytes = f.counter("response_bytes_total", "Response body bytes sent to clients.")
	m.backendUp = f.gaugeVec("backend_up",
		"1 when the backend may take new requests, 0 otherwise.", "pool", "backend")
	m.weight = f.gaugeVec("backend_weight",
		"The backend's effective weight, as the balancer uses it now.", "pool", "backend")
	m.state = f.gaugeVec("backend_state",
		"1 for the backend's current state (healthy, unhealthy, draining, ejected), 0 for the others.",
		"pool", "backend", "state")
	m.healthChecks = f.counterVec("health_checks_total",
		"Active health checks, by result (success, failure).", "pool", "backend", "result")
	m.ejections = f.counterVec("outlier_ejections_total",
		"Times the backend was ejected by outlier detection.", "pool", "backend")
	m.upErrors = f.counterVec("upstream_errors_total",
		"Failed upstream attempts, by kind (connect, timeout, reset, other), and idle connections found dead (idle).", "pool", "backend", "kind")
	m.retries = f.counterVec("retries_total", "Upstream attempts after the first, by pool.", "pool")
	m.panicMode = f.gaugeVec("pool_panic_mode",
		"1 while the pool balances over all its backends because too few are healthy (panic_threshold), 0 otherwise.", "pool")
	m.noBackend = f.counterVec("no_backend_total",
		"Requests answered 503 because the pool had no backend to pick.", "pool")
	m.reloads = f.counterVec("config_reloads_total",
		"Configuration reloads, by result (success, failure).", "result")
	m.reloadOK[0] = m.reloads.WithLabelValues("failure")
	m.reloadOK[1] = m.reloads.WithLabelValues("success")
	m.lastReload = f.gauge("config_last_reload_success_timestamp_seconds",
		"Unix time of the last configuration that was loaded and published.")
	m.generation = f.gauge("config_generation", "Generation number of the published configuration.")
	m.logDropped = f.counter("access_log_dropped_total",
		"Access log lines lost because the writer fell behind or a write failed.")
	m.discoveryErr = f.counterVec("discovery_errors_total",
		"Failed service-discovery lookups (the last good set was kept), by pool.", "pool")

	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	reg.MustRegister(connsCollector{m: m, desc: prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "upstream_connections"),
		"Open connections to the backend, idle or busy.",
		[]string{"pool", "backend"}, nil)})
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// ContinueOnError: one failing collector must not blank the whole
	// scrape. Registry set: scrape errors are counted in our registry.
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
	return m
}

// Registry is the registry every sluice series lives in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// InFlightAdd moves sluice_requests_in_flight by delta: +1 when a request
// starts, -1 when it ends.
func (m *Metrics) InFlightAdd(delta int) {
	if m == nil {
		return
	}
	m.inFlight.Add(float64(delta))
}

// ConnOpened counts a new client connection (fasthttp Server.ConnState
// StateNew).
func (m *Metrics) ConnOpened() {
	if m == nil {
		return
	}
	m.downConns.Inc()
}

// CountRefusedConns makes total the source of
// sluice_downstream_connections_refused_total: it must only grow, and is
// called at each scrape.
func (m *Metrics) CountRefusedConns(total func() uint64) {
	if m == nil {
		return
	}
	m.refused.Store(&total)
}

// ConnClosed counts a closed client connection (StateClosed).
func (m *Metrics) ConnClosed() {
	if m == nil {
		return
	}
	m.downConns.Dec()
}

// Bytes adds one request's body sizes: in from the client, out to it.
// Negative sizes (fasthttp's -1 for "unknown") are ignored, since a counter
// given a negative value panics.
func (m *Metrics) Bytes(in, out int) {
	if m == nil {
		return
	}
	if in > 0 {
		m.reqBytes.Add(float64(in))
	}
	if out > 0 {
		m.respBytes.Add(float64(out))
	}
}

// DiscoveryError counts one failed discovery lookup of pool (control
// plane: it may look the label up).
func (m *Metrics) DiscoveryError(pool string) {
	if m == nil {
		return
	}
	m.discoveryErr.WithLabelValues(pool).Inc()
}

// DiscoveryPool makes pool's sluice_discovery_errors_total series, at 0,
// as its discovery starts: a series that appears only at its first
// failure hides that failure from rate() and increase() (found by review).
func (m *Metrics) DiscoveryPool(pool string) {
	if m == nil {
		return
	}
	m.discoveryErr.WithLabelValues(pool)
}

// ForgetDiscovery removes pool's sluice_discovery_errors_total series: a
// reload took the pool's discovery away (the pool stays, ForgetPool does
// the rest when it goes).
func (m *Metrics) ForgetDiscovery(pool string) {
	if m == nil {
		return
	}
	m.discoveryErr.DeleteLabelValues(pool)
}

// AccessLogDropped counts one access log line dropped; pass it as the
// access logger's dropped callback.
func (m *Metrics) AccessLogDropped() {
	if m == nil {
		return
	}
	m.logDropped.Inc()
}

// Loaded records the configuration loaded at start: generation and time,
// but not a reload (a restart would otherwise count as one).
func (m *Metrics) Loaded(generation uint64, at time.Time) {
	if m == nil {
		return
	}
	m.generation.Set(float64(generation))
	m.lastReload.Set(float64(at.UnixNano()) / 1e9)
}

// Reload records a reload attempt. A successful one also sets the
// generation and the last-success timestamp to at; a failed one leaves
// them, since the previous configuration is still the one serving.
func (m *Metrics) Reload(ok bool, generation uint64, at time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.reloadOK[0].Inc()
		return
	}
	m.reloadOK[1].Inc()
	m.Loaded(generation, at)
}

// factory creates series families under the sluice namespace and registers
// them, so that New reads as a list of families.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: name, Help: help, Buckets: buckets,
	}, labels)
	f.reg.MustRegister(h)
	return h
}

// connsCollector reports sluice_upstream_connections by asking each
// backend's connection function at scrape time: the upstream client keeps
// the count already, so mirroring it into a gauge per request would be pure
// overhead.
type connsCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (c connsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c connsCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for k, b := range c.m.backends {
		f := b.conns.Load()
		if f == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64((*f)()), k.pool, k.backend)
	}
}
