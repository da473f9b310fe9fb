package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"sluice/balancer"
	"sluice/config"
	"sluice/health"
	"sluice/metrics"
)

// Controller is the control plane. One goroutine (Run) owns every piece of
// mutable pool state — the running config, the upstreams by identity, their
// health, ejections, drains and runtime overrides — and is the only writer
// of the proxy's snapshot. Other goroutines ask it to change things by
// sending it a function to run, or (health) by dropping events in its inbox.
type Controller struct {
	proxy *Proxy
	log   zerolog.Logger
	cmds  chan func()
	inbox *health.Inbox
	// tick is how often timed work (drains, slow start, ejections) is done.
	tick time.Duration
	// Dial, when set before Run, replaces TCP dialing to upstreams
	// (benchmarks over in-memory listeners).
	Dial func(addr string) (net.Conn, error)
	// Metrics, when set before Run, gets every series the snapshots use;
	// nil turns metrics off.
	Metrics *metrics.Metrics

	// Owned by the Run goroutine.
	checker  *health.Checker
	cfg      *config.Config
	gen      uint64
	members  map[memberKey]*member
	pools    map[string]*poolState
	draining []*draining
	// overdue are drains ended by drain_timeout with requests still in
	// flight: their connections stay open until those end, and count
	// against max_conns_per_backend if the backend comes back meanwhile.
	overdue []*draining
	// retiring are the clients drains took out since the last publish:
	// retired once the snapshot without them is out (publish), so that
	// a retry meanwhile still has them (see upClient.retired).
	retiring []*upClient
	ramping  bool
	// lastBuild is when the last snapshot was built.
	lastBuild time.Time
	// lastSweep is when idle upstream connections were last swept.
	lastSweep time.Time
	events    []health.Event
	// routeNames and routePairs are the routes of the last snapshot, by
	// name and with their pool. seriesRoutes (route and pool, with the
	// count of their requests in flight) and seriesPools are the routes
	// and pools with metric series: those of the config and, until their
	// requests in flight and the backends that left with them are done,
	// removed or re-pointed ones (forgetSeries).
	// epochs numbers the members' probe runs (member.probeEpoch).
	epochs       uint64
	routeNames   map[string]bool
	routePairs   map[routeKey]bool
	seriesRoutes map[routeKey]*atomic.Int64
	seriesPools  map[string]bool
}

// routeKey is a route (by name) through one pool.
type routeKey struct{ name, pool string }

type memberKey struct{ pool, addr string }

// member is one backend of one pool and what the control plane knows of it.
type member struct {
	up       *upstream
	settings clientSettings
	// weight is the configured (or discovered) weight.
	weight uint32
	order  int
	static bool // listed in the config file (else discovered)

	healthy      bool      // active checks' view; new backends start healthy
	healthReason string    // why it last changed
	since        time.Time // when it last became able to take traffic (slow start)
	ejectedUntil time.Time // passive ejection end; zero when not ejected

	adminDrain  bool    // drained through the admin API
	adminWeight *uint32 // weight set through the admin API
	// probeEpoch is the Epoch of this member's health probes: a new one
	// when it is added and when its pool's checks are added or removed,
	// so that an event of probes since stopped is dropped (handleEvents).
	probeEpoch uint64
	effWeight  float64 // weight in the last snapshot (after slow start)
}

// poolState is the control plane's per-pool state.
type poolState struct {
	checked    bool // the pool has active health checks
	ejector    *health.Ejector
	outlierCfg config.OutlierDetection
	discovered []DiscoveredBackend
	hasDNS     bool
	// dnsFrom is the discovery whose answers discovered holds; answered
	// says one has come (or was seeded), firstAnswer that the reconcile
	// under way takes the first: its backends join at full weight, as
	// the backends a pool starts with do (found by review: beside the
	// file's backends, a DNS pool's first answer at start ramped).
	dnsFrom     config.DNSDiscovery
	answered    bool
	firstAnswer bool
}

// DiscoveredBackend is one address found by service discovery.
type DiscoveredBackend struct {
	Address string
	Weight  int
}

// draining is an upstream that left: it takes no new requests and is
// freed once its in-flight requests finish, or at its deadline. Those are
// its client's own: a client replaced for new settings shares its
// backend (and the backend's counters) with its successor.
type draining struct {
	up       *upstream
	deadline time.Time
}

// rampStep is how often snapshots are rebuilt while a slow start ramps.
const rampStep = 250 * time.Millisecond

// ErrStopped is returned by calls made after the controller stopped.
var ErrStopped = errors.New("proxy: controller stopped")

// ErrNotFound is returned by admin calls naming an unknown pool or backend.
var ErrNotFound = errors.New("not found")

// NewController returns a controller publishing to p. Call Run.
func NewController(p *Proxy, log zerolog.Logger) *Controller {
	c := &Controller{
		proxy:   p,
		log:     log,
		cmds:    make(chan func()),
		inbox:   health.NewInbox(),
		tick:    100 * time.Millisecond,
		members: map[memberKey]*member{},
		pools:   map[string]*poolState{},
	}
	p.trips = c.inbox
	p.failures = newFailureLog(log)
	return c
}

// Run owns the control state until ctx is done, then stops the health
// checks, closes every upstream's idle connections and returns.
func (c *Controller) Run(ctx context.Context) {
	c.checker = health.NewChecker(health.CheckerOptions{
		Logger:   c.log,
		OnChange: c.inbox.Put,
		OnResult: c.healthResult,
	})
	defer c.checker.Close()
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, m := range c.members {
				m.up.client.Close()
			}
			for _, d := range c.draining {
				d.up.client.Close()
			}
			return
		case f := <-c.cmds:
			f()
		case <-c.inbox.Ready():
			c.handleEvents(time.Now())
		case now := <-t.C:
			c.onTick(now)
		}
	}
}

// do runs f on the control goroutine and waits for it. ctx bounds only
// the wait for the control goroutine to take f: once taken, f runs to the
// end (it is the controller's own bounded work, no I/O), and its result is
// the answer. Returning earlier would report a change as failed that is
// already live, and let the caller read what f is still writing.
func (c *Controller) do(ctx context.Context, f func() error) error {
	errc := make(chan error, 1)
	select {
	case c.cmds <- func() { errc <- f() }:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrStopped, ctx.Err())
	}
	return <-errc
}

// Apply makes cfg the running config: backends that stay keep their
// counters, health and connections; new ones are added (healthy, slow
// starting); vanished ones drain.
func (c *Controller) Apply(ctx context.Context, cfg *config.Config) error {
	return c.ApplySeeded(ctx, cfg, nil)
}

// ApplySeeded is Apply with the first discovered backends of DNS pools
// (seeds, by pool name) in the same snapshot: a pool new to the config, or
// whose discovery changed, then takes traffic with its backends from the
// start, not empty until its watcher's first lookup.
func (c *Controller) ApplySeeded(ctx context.Context, cfg *config.Config, seeds map[string][]DiscoveredBackend) error {
	return c.do(ctx, func() error {
		now := time.Now()
		c.keepRampsDone(c.cfg, now)
		c.cfg = cfg
		for name, pc := range cfg.Pools {
			ps := c.pools[name]
			if ps == nil {
				ps = &poolState{}
				c.pools[name] = ps
			}
			ps.hasDNS = pc.Discovery != nil && pc.Discovery.DNS != nil
			if !ps.hasDNS {
				ps.discovered, ps.answered = nil, false
			} else {
				// Another lookup (not only another interval, which
				// restarts the watcher on the same name: found by
				// review) answers anew.
				if !pc.Discovery.DNS.SameLookup(ps.dnsFrom) {
					ps.answered = false
				}
				ps.dnsFrom = *pc.Discovery.DNS
				if seed, ok := seeds[name]; ok {
					ps.discovered = slices.Clone(seed)
					if seed != nil {
						// (A failed lookup's nil seed starts the pool
						// empty: the first answer is still to come.)
						ps.firstAnswer, ps.answered = !ps.answered, true
					}
				}
			}
			od := config.OutlierDetection{}
			if pc.OutlierDetection != nil {
				od = *pc.OutlierDetection
			}
			if ps.ejector == nil || od != ps.outlierCfg {
				if ps.ejector != nil {
					// Only the old ejector could end its ejections: end
					// them now rather than leave backends out for good.
					c.endEjections(name, now)
				}
				ps.ejector, ps.outlierCfg = nil, od
				if pc.OutlierDetection != nil {
					ps.ejector = health.NewEjector(od)
				}
			}
			if checked := pc.HealthCheck != nil; checked != ps.checked {
				// Probes start or stop: their view of the backends starts
				// afresh (healthy until a probe says otherwise), so none is
				// left unhealthy by checks that no longer run.
				ps.checked = checked
				c.resetHealth(name, now)
			}
		}
		for name := range c.pools {
			if _, ok := cfg.Pools[name]; !ok {
				delete(c.pools, name)
			}
		}
		return c.reconcile(now)
	})
}

// endEjections brings every ejected backend of pool back.
func (c *Controller) endEjections(pool string, now time.Time) {
	for k, m := range c.members {
		if k.pool == pool && !m.ejectedUntil.IsZero() {
			m.ejectedUntil = time.Time{}
			m.since = now // back in rotation: slow start, as after an ejection's end
			m.up.outlier.Reset()
			c.log.Info().Str("pool", pool).Str("backend", k.addr).Msg("backend ejection ended: outlier_detection changed")
		}
	}
}

// resetHealth marks every backend of pool healthy (checks added or
// removed); one that was not comes back with slow start.
func (c *Controller) resetHealth(pool string, now time.Time) {
	for k, m := range c.members {
		if k.pool == pool {
			c.epochs++
			m.probeEpoch = c.epochs // the old checks' late events are dropped
			if !m.healthy {
				m.healthy, m.healthReason, m.since = true, "", now
			}
		}
	}
}

// SetDiscovered replaces the discovered backends of a pool (DNS results)
// found by a lookup for discovery from. Results for a discovery the
// running config no longer has are dropped: a reload that changed it has
// seeded the pool with the new one's, and the old watcher, which it stops
// only once applied, may still answer meanwhile.
func (c *Controller) SetDiscovered(ctx context.Context, pool string, from config.DNSDiscovery, backends []DiscoveredBackend) error {
	return c.do(ctx, func() error {
		if c.cfg == nil {
			return fmt.Errorf("pool %q: %w", pool, ErrNotFound)
		}
		if pc := c.cfg.Pools[pool]; pc == nil || pc.Discovery == nil || pc.Discovery.DNS == nil || *pc.Discovery.DNS != from {
			return nil
		}
		ps, ok := c.pools[pool]
		if !ok || !ps.hasDNS {
			return fmt.Errorf("pool %q: %w", pool, ErrNotFound)
		}
		ps.discovered = slices.Clone(backends)
		ps.firstAnswer, ps.answered = !ps.answered, true
		return c.reconcile(time.Now())
	})
}

// reconcile brings the members in line with the config and the discovered
// sets, then publishes.
func (c *Controller) reconcile(now time.Time) error {
	cfg := c.cfg
	settings := settingsOf(cfg)
	seen := make(map[memberKey]bool)
	// A pool that had no members (at start, or a pool new to the config)
	// takes its first ones at full weight: slow start is for a backend
	// joining others that carry the traffic, and ramping all of them at
	// once only bends their shares (HAProxy does not ramp at start).
	had := make(map[string]bool)
	for k := range c.members {
		had[k.pool] = true
	}
	add := func(pool, addr string, weight uint32, order int, static bool) {
		// One spelling per socket: the file's 127.0.0.1:09001 and a DNS
		// answer's 127.0.0.1:9001 are one backend (found by review: they
		// were two, each with a full share).
		addr = config.BackendAddress(addr)
		k := memberKey{pool, addr}
		if seen[k] {
			return // listed statically and discovered: the file wins
		}
		seen[k] = true
		m, ok := c.members[k]
		if ok && m.settings != settings {
			// New timeouts or limits need a new client; the old one
			// finishes what it has in flight, like a leaving backend.
			c.drain(m.up, cfg.DrainTimeout, now)
			fresh := newUpstream(pool, addr, settings, c.Dial, c.outlierThreshold(pool), c.proxy.upBufs)
			fresh.backend = m.up.backend // counters carry over
			// So does the passive failure streak (found by review: a
			// reload that raised timeouts gave a failing backend a new
			// streak).
			fresh.outlier = m.up.outlier
			fresh.client.conns = m.up.client.conns
			fresh.series = m.up.series
			fresh.series.SetConnsFunc(fresh.client.ConnsCount)
			m.up, m.settings = fresh, settings
		}
		if !ok {
			c.epochs++
			m = &member{
				up:         newUpstream(pool, addr, settings, c.Dial, c.outlierThreshold(pool), c.proxy.upBufs),
				settings:   settings,
				healthy:    true,
				probeEpoch: c.epochs,
			}
			if had[pool] && (static || !c.pools[pool].firstAnswer) {
				m.since = now
			}
			d := c.drainingOf(pool, addr)
			if d == nil {
				// Or one whose drain ended at drain_timeout with a
				// request still running on a connection of it (found by
				// review: the new client opened beside it).
				d = c.overdueOf(pool, addr)
			}
			if d != nil {
				// Back while a client of its former self still drains:
				// the same backend (in-flight and latency counters), and
				// one count of open connections, which the new client's
				// own would replace in sluice_upstream_connections (found
				// by review: the busy draining connection went unseen).
				m.up.backend = d.up.backend
				m.up.client.conns = d.up.client.conns
			}
			if c.Metrics != nil {
				m.up.series = c.Metrics.Backend(pool, addr)
				m.up.series.SetConnsFunc(m.up.client.ConnsCount)
			}
			c.members[k] = m
			c.log.Info().Str("pool", pool).Str("backend", addr).Bool("static", static).Msg("backend added")
		}
		was := uint32(0)
		if ok {
			was = m.configWeight()
		}
		if ok && m.weight != weight && m.adminWeight != nil {
			// The file (or discovery) changed this backend's weight on
			// purpose: that beats an earlier runtime override.
			m.adminWeight = nil
		}
		if ok && was == 0 && weight > 0 && (m.adminWeight == nil || *m.adminWeight > 0) {
			// Back from weight 0 (the file's, or the admin API's that the
			// file's change replaced): slow start again.
			m.since = now
		}
		m.weight, m.order, m.static = weight, order, static
		m.up.outlier.SetThreshold(c.outlierThreshold(pool))
	}
	for _, name := range cfg.PoolNames() {
		pc := cfg.Pools[name]
		for i, b := range pc.Backends {
			add(name, b.Address, uint32(b.Weight), i, true)
		}
		for i, d := range c.pools[name].discovered {
			add(name, d.Address, uint32(max(d.Weight, 0)), len(pc.Backends)+i, false)
		}
	}
	for k, m := range c.members {
		if !seen[k] {
			delete(c.members, k)
			if ps := c.pools[k.pool]; ps != nil && ps.ejector != nil {
				ps.ejector.Forget(k.addr)
			}
			c.drain(m.up, cfg.DrainTimeout, now)
			c.log.Info().Str("pool", k.pool).Str("backend", k.addr).Int64("in_flight", m.up.backend.InFlight()).
				Msg("backend removed, draining")
		}
	}
	for _, ps := range c.pools {
		ps.firstAnswer = false
	}
	c.updateChecks()
	return c.publish(now)
}

// keepRampsDone keeps a pool's members that served at full weight under
// the old config at full weight across a reload: a ramp is for a backend
// that joins or comes back, and since is stamped whether or not the pool
// ramps. buildPool forgets since once a member is at full weight; this
// covers a ramp that ended after the last build (found by review: a
// reload turning slow_start on, or lengthening it, cut backends serving
// at full weight back to a tenth and moved their hash keys; one from
// ring_hash, where weight 1 never ramps, to round_robin cut them to 1/16).
func (c *Controller) keepRampsDone(old *config.Config, now time.Time) {
	if old == nil {
		return
	}
	for k, m := range c.members {
		was := old.Pools[k.pool]
		if was == nil || m.since.IsZero() {
			continue
		}
		if _, ramping := health.SlowStartWeight(m.configWeight()*rampScaleOf(was), m.since, now, was.SlowStart); !ramping {
			m.since = time.Time{}
		}
	}
}

// rampScaleOf is what a pool multiplies weights by for slow start: ramps
// move in steps of 1/rampScale, except where weights are hash points
// (ring_hash, maglev), whose count a ramp would keep moving.
func rampScaleOf(pc *config.Pool) uint32 {
	if pc.SlowStart > 0 && pc.Algorithm != "ring_hash" && pc.Algorithm != "maglev" {
		return rampScale
	}
	return 1
}

func (c *Controller) outlierThreshold(pool string) int {
	if pc := c.cfg.Pools[pool]; pc != nil && pc.OutlierDetection != nil {
		return pc.OutlierDetection.ConsecutiveFailures
	}
	return 0
}

// updateChecks tells the health checker which backends to probe.
func (c *Controller) updateChecks() {
	if c.checker == nil {
		return
	}
	var targets []health.Target
	for k := range c.members {
		if pc := c.cfg.Pools[k.pool]; pc != nil && pc.HealthCheck != nil {
			targets = append(targets, health.Target{Pool: k.pool, Addr: k.addr, Check: *pc.HealthCheck, Epoch: c.members[k].probeEpoch})
		}
	}
	c.checker.Update(targets)
}

// handleEvents folds health transitions into the members and republishes.
func (c *Controller) handleEvents(now time.Time) {
	c.events = c.inbox.Take(c.events[:0])
	changed := false
	for _, e := range c.events {
		m, ok := c.members[memberKey{e.Pool, e.Addr}]
		if !ok {
			continue // left meanwhile
		}
		switch e.Source {
		case health.SourceActive:
			if e.Epoch != m.probeEpoch {
				continue // from probes since stopped (see probeEpoch)
			}
			switch {
			case m.healthy != e.Healthy:
				m.healthy, m.healthReason, changed = e.Healthy, e.Reason, true
				if e.Healthy {
					// health_reason is why probes fail, only while they
					// do (found by review: "status 200" stayed there).
					m.since, m.healthReason = now, ""
				}
			case !e.Healthy:
				// A failing probe's new reason: nothing to republish.
				m.healthReason = e.Reason
			}
		case health.SourcePassive:
			if c.eject(m, e.Pool, e.Addr, now) {
				changed = true
			}
		}
	}
	clear(c.events)
	if changed {
		c.publishOrLog(now)
	}
}

// eject applies a passive trip: eject for the pool's ejection time unless
// that would break max_ejection_percent.
func (c *Controller) eject(m *member, pool, addr string, now time.Time) bool {
	ps := c.pools[pool]
	if ps == nil || ps.ejector == nil || !m.ejectedUntil.IsZero() {
		m.up.outlier.Reset()
		return false
	}
	// The share is of the backends that would take traffic but for
	// ejection: weight 0, admin-drained and (outside panic mode)
	// unhealthy ones counted, max_ejection_percent let every serving
	// backend go (found by review: 2 serving and 2 idle, both serving
	// ejected at 50%), and an ejected one drained since held a share
	// it no longer takes (found by review).
	// Panic mode as the members stand now (buildPool's rule): the
	// published snapshot may predate health changes of this batch of
	// events (found by review).
	var candidates, ejectedAll, healthy, ejectedHealthy int
	for k, o := range c.members {
		if k.pool != pool || o.configWeight() == 0 || o.adminDrain {
			continue
		}
		out := !o.ejectedUntil.IsZero()
		candidates++
		if out {
			ejectedAll++
		}
		if o.healthy {
			healthy++
			if out {
				ejectedHealthy++
			}
		}
	}
	size, ejected := healthy, ejectedHealthy
	if c.cfg != nil && c.cfg.Pools[pool] != nil &&
		health.Panic(healthy-ejectedHealthy, candidates, c.cfg.Pools[pool].PanicThreshold) {
		size, ejected = candidates, ejectedAll
	}
	until, ok := ps.ejector.EjectAmong(addr, now, max(size, 1), ejected)
	if !ok {
		m.up.outlier.Reset()
		c.proxy.failures.ejectionRefused(now, pool, addr)
		return false
	}
	m.ejectedUntil = until
	c.log.Warn().Str("pool", pool).Str("backend", addr).Time("until", until).
		Int64("consecutive_failures", m.up.outlier.Streak()).Msg("backend ejected")
	m.up.series.Ejected()
	return true
}

// onTick does the timed work: ended ejections, slow-start ramps, drains.
func (c *Controller) onTick(now time.Time) {
	// A ramp moves in steps of rampStep: a finer one would rebuild every
	// pool (maglev tables, rings) ten times a second for no visible gain.
	changed := c.ramping && now.Sub(c.lastBuild) >= rampStep
	for name, ps := range c.pools {
		if ps.ejector == nil {
			continue
		}
		for _, addr := range ps.ejector.Expire(now) {
			if m, ok := c.members[memberKey{name, addr}]; ok {
				m.ejectedUntil = time.Time{}
				m.since = now
				m.up.outlier.Reset()
				changed = true
				c.log.Info().Str("pool", name).Str("backend", addr).Msg("backend ejection ended")
			}
		}
	}
	if changed && c.cfg != nil {
		c.publishOrLog(now)
	}
	c.finishDrains(now)
	if c.routesPending() {
		c.forgetSeries()
	}
	c.sweepIdle(now)
}

// sweepIdle closes upstream connections left idle for longer than
// timeouts.upstream_idle, every half of it (at most every second): a
// connection lives at most one and a half times the idle timeout, and is
// never used past it (upClient.acquire).
func (c *Controller) sweepIdle(now time.Time) {
	if c.cfg == nil || now.Sub(c.lastSweep) < min(c.cfg.Timeouts.UpstreamIdle/2, time.Second) {
		return
	}
	c.lastSweep = now
	for _, m := range c.members {
		if m.adminDrain {
			m.up.client.closeIdle(now.UnixNano()) // drained: none is needed
			continue
		}
		m.up.client.sweep(now)
	}
	for _, d := range c.draining {
		d.up.client.sweep(now)
	}
}

func (c *Controller) publishOrLog(now time.Time) {
	if err := c.publish(now); err != nil {
		c.log.Error().Err(err).Msg("snapshot rebuild failed")
	}
}

// drain takes up out of service: it is already absent from the next
// snapshot; its connections are closed once idle.
func (c *Controller) drain(up *upstream, timeout time.Duration, now time.Time) {
	// No new request takes its idle connections: they close now, and
	// the busy ones as their requests end. Left open, they counted
	// against max_conns_per_backend, which the backend's clients share,
	// until the drain ended (found by review: a reload's new client got
	// 503s beside the old one's idle connections, also when they were
	// closed only after the next publish). Retries stop using it once
	// that publish is out (retiring).
	up.client.Close()
	c.retiring = append(c.retiring, up.client)
	// Until its series are forgotten they say what it is: draining, out
	// of rotation. (A member replaced for new settings shares its series
	// with its successor, which the next snapshot sets again.)
	up.series.SetUp(false)
	up.series.SetState(metrics.StateDraining)
	up.series.SetWeight(0)
	c.draining = append(c.draining, &draining{up: up, deadline: now.Add(timeout)})
}

func (c *Controller) finishDrains(now time.Time) {
	kept := c.draining[:0]
	var ended []*draining
	for _, d := range c.draining {
		if d.up.client.InFlight() > 0 && now.Before(d.deadline) {
			kept = append(kept, d)
			continue
		}
		d.up.client.Close()
		b := d.up.backend
		c.log.Info().Str("pool", b.Pool).Str("backend", b.Addr).Int64("in_flight", d.up.client.InFlight()).Msg("backend drained")
		ended = append(ended, d)
	}
	clear(c.draining[len(kept):])
	c.draining = kept
	// Only its own requests in flight keep a drain overdue: the count of
	// open connections it shares with the backend's current client (found
	// by review: on a busy backend every settings reload left one behind
	// for good). A closed client closes a connection as its request ends,
	// before that request leaves the in-flight count.
	//
	// A drain is done with once no request of it is in flight: at its
	// end, or later if it was overdue. Its backend's series stay until
	// then, so that the requests that outlive drain_timeout are counted
	// (found by review: they finished into deleted series).
	var done []*draining
	for _, d := range ended {
		if d.up.client.InFlight() > 0 {
			c.overdue = append(c.overdue, d)
		} else {
			done = append(done, d)
		}
	}
	over := c.overdue[:0]
	for _, d := range c.overdue {
		if d.up.client.InFlight() > 0 {
			over = append(over, d)
		} else {
			done = append(done, d)
		}
	}
	clear(c.overdue[len(over):])
	c.overdue = over
	if len(done) == 0 || c.Metrics == nil {
		return
	}
	for _, d := range done {
		// Its series go once it has left for good: not back in a pool,
		// and no other client of it (one replaced for new settings
		// before it left) still draining or overdue.
		b := d.up.backend
		if _, back := c.members[memberKey{b.Pool, b.Addr}]; !back && !c.leaving(b.Pool, b.Addr) {
			c.Metrics.ForgetBackend(b.Pool, b.Addr)
		}
	}
	c.forgetSeries()
}

// drainingOf is the latest draining client of backend addr of pool, nil
// if none drains.
func (c *Controller) drainingOf(pool, addr string) *draining {
	for i := len(c.draining) - 1; i >= 0; i-- {
		if b := c.draining[i].up.backend; b.Pool == pool && b.Addr == addr {
			return c.draining[i]
		}
	}
	return nil
}

// overdueOf is the latest overdue drain of backend addr of pool, nil if
// none.
func (c *Controller) overdueOf(pool, addr string) *draining {
	for i := len(c.overdue) - 1; i >= 0; i-- {
		if b := c.overdue[i].up.backend; b.Pool == pool && b.Addr == addr {
			return c.overdue[i]
		}
	}
	return nil
}

// leaving reports whether a client of backend addr of pool drains, or
// has requests in flight past its drain's deadline (addr "": any backend
// of pool).
func (c *Controller) leaving(pool, addr string) bool {
	for _, list := range [2][]*draining{c.draining, c.overdue} {
		for _, d := range list {
			if d.up.backend.Pool == pool && (addr == "" || d.up.backend.Addr == addr) {
				return true
			}
		}
	}
	return false
}

// publish builds a snapshot from the control state and swaps it in.
func (c *Controller) publish(now time.Time) error {
	defer func() {
		// After the swap (or a failed build): see retiring.
		for _, cl := range c.retiring {
			cl.retired.Store(true)
		}
		clear(c.retiring)
		c.retiring = c.retiring[:0]
	}()
	s, err := c.build(now)
	if err != nil {
		return err
	}
	c.proxy.Publish(s)
	return nil
}

func (c *Controller) build(now time.Time) (*Snapshot, error) {
	cfg := c.cfg
	c.gen++
	c.lastBuild = now
	s := &Snapshot{
		Generation:      c.gen,
		Config:          cfg,
		pools:           make(map[string]*pool, len(cfg.Pools)),
		preserveHost:    cfg.PreserveHost,
		forwarding:      newForwarding(cfg.Forwarding),
		responseTimeout: cfg.Timeouts.Response,
		attempts:        cfg.Retries.Attempts,
		metrics:         c.Metrics,
		noRoute:         c.Metrics.Requests("", "", ""),
	}
	byPool := map[string][]*member{}
	for k, m := range c.members {
		byPool[k.pool] = append(byPool[k.pool], m)
	}
	c.ramping = false
	for _, name := range cfg.PoolNames() {
		pl, err := c.buildPool(name, cfg.Pools[name], byPool[name], cfg, now)
		if err != nil {
			return nil, err
		}
		s.pools[name] = pl
	}
	routes := make([]*route, len(cfg.Routes))
	hosts := make([]string, len(cfg.Routes))
	names := make(map[string]bool, len(cfg.Routes))
	pairs := make(map[routeKey]bool, len(cfg.Routes))
	if c.seriesRoutes == nil {
		c.seriesRoutes, c.seriesPools = map[routeKey]*atomic.Int64{}, map[string]bool{}
	}
	for i, rc := range cfg.Routes {
		r := &route{name: RouteName(rc), prefix: []byte(rc.Match.PathPrefix), pool: s.pools[rc.Pool]}
		k := routeKey{r.name, rc.Pool}
		pairs[k] = true
		if c.seriesRoutes[k] == nil {
			c.seriesRoutes[k] = new(atomic.Int64)
		}
		r.inFlight = c.seriesRoutes[k]
		r.series = c.Metrics.Route(r.name)
		r.noBackend = c.Metrics.Requests(r.name, rc.Pool, "")
		r.requests = make([]*metrics.RequestCounters, len(r.pool.targets))
		for j, up := range r.pool.targets {
			r.requests[j] = c.Metrics.Requests(r.name, rc.Pool, up.backend.Addr)
		}
		routes[i] = r
		hosts[i] = rc.Match.Host
		names[r.name] = true
	}
	s.routes = newRouteTable(routes, hosts)
	c.routeNames, c.routePairs = names, pairs
	for name := range cfg.Pools {
		c.seriesPools[name] = true
	}
	c.forgetSeries()
	return s, nil
}

// RouteName is the name a route has in metrics and logs: its host and
// path prefix, such as "api.example.com/v1/" or "/".
func RouteName(rc config.Route) string {
	p := rc.Match.PathPrefix
	if p == "" {
		p = "/"
	}
	return rc.Match.Host + p
}

func (c *Controller) buildPool(name string, pc *config.Pool, members []*member, cfg *config.Config, now time.Time) (*pool, error) {
	slices.SortFunc(members, func(a, b *member) int { return a.order - b.order })
	hk, err := config.ParseHashKey(pc.HashKey)
	if err != nil {
		return nil, err
	}
	pl := &pool{name: name, hashKey: hk, hashName: []byte(hk.Name), preserveHost: cfg.PreserveHost,
		series: c.Metrics.Pool(name)}
	if pc.PreserveHost != nil {
		pl.preserveHost = *pc.PreserveHost
	}
	// Candidates may take traffic by configuration; ready ones also by
	// health. Weight 0 and admin-drained backends are members that take no
	// new requests.
	var candidates, ready []*member
	for _, m := range members {
		m.effWeight = 0
		if m.configWeight() == 0 || m.adminDrain {
			continue
		}
		candidates = append(candidates, m)
		if m.healthy && m.ejectedUntil.IsZero() {
			ready = append(ready, m)
		}
	}
	for _, m := range members {
		m.up.series.SetState(metricState(m.state()))
	}
	use := ready
	panicking := health.Panic(len(ready), len(candidates), pc.PanicThreshold)
	pl.series.SetPanic(panicking)
	if panicking {
		// Too few healthy backends: spread over all rather than crush
		// the survivors (Envoy's panic mode).
		use = candidates
		pl.panic = true
	}
	scale := rampScaleOf(pc)
	targets := make([]balancer.Target, 0, len(use))
	for _, m := range use {
		w, ramping := health.SlowStartWeight(m.configWeight()*scale, m.since, now, pc.SlowStart)
		c.ramping = c.ramping || ramping
		if !ramping && w > 0 {
			m.since = time.Time{} // at full weight: see keepRampsDone
		}
		m.effWeight = float64(w) / float64(scale)
		pl.targets = append(pl.targets, m.up)
		targets = append(targets, balancer.Target{Backend: m.up.backend, Weight: w})
	}
	// Each gauge is set once, to its new value: set to 0 first and then
	// again for those in use, a scrape in between saw a healthy backend
	// down, every 250 ms during a slow start (found by review). up: takes
	// new requests (a drained or weight-0 one does not, one in panic mode
	// does): those in use, all of weight 1 or more (slow start's floor).
	for _, m := range members {
		m.up.series.SetWeight(m.effWeight)
		m.up.series.SetUp(m.effWeight > 0)
	}
	pl.picks = len(pl.targets)
	algorithm := pc.Algorithm
	cookie, secret := "", ""
	if pc.Sticky != nil {
		cookie, secret = pc.Sticky.Cookie, pc.Sticky.Secret
	}
	if algorithm == "sticky" {
		algorithm = "p2c"
		if cookie == "" {
			cookie = config.DefaultStickyCookie
		}
	}
	if cookie != "" {
		// A healthy backend of weight 0 or drained through the admin API
		// keeps its sessions (HAProxy's rule): it follows the picker's
		// targets, for the requests whose cookie names it. One that is
		// unhealthy, ejected or gone loses them.
		for _, m := range members {
			if (m.configWeight() == 0 || m.adminDrain) && m.healthy && m.ejectedUntil.IsZero() {
				pl.targets = append(pl.targets, m.up)
			}
		}
	}
	// Only the options the algorithm reads: a reload of another's left
	// the picker built anew, and round robin restarted its rotation
	// (found by review).
	var opts balancer.Options
	switch algorithm {
	case "ewma":
		opts.EWMAWindow = pc.EWMAWindow
	case "maglev":
		opts.MaglevTableSize = pc.MaglevTableSize
	}
	if old := c.publishedPool(name); old != nil && old.algorithm == algorithm && old.options == opts && slices.Equal(old.built, targets) {
		// The same targets at the same weights: the picker goes on, so
		// round robin keeps its rotation (and a hash its table) across
		// rebuilds for other pools' changes, which restarted it at a
		// random place each time (found by review).
		pl.picker = old.picker
	} else {
		opts.Seed = rand.Uint64()
		if pl.picker, err = balancer.Build(algorithm, targets, opts); err != nil {
			return nil, err
		}
		opts.Seed = 0
	}
	pl.algorithm, pl.options, pl.built = algorithm, opts, targets
	if algorithm == "ewma" {
		pl.ewmaWindow = int64(pc.EWMAWindow)
	}
	if cookie != "" {
		pl.sticky, pl.stickyName = []byte(cookie), cookie
		pl.stickyIndex = make(map[string]int, len(pl.targets))
		pl.stickyCookies = make([][]byte, len(pl.targets))
		for i, up := range pl.targets {
			id := stickyID(up.backend.ID, secret)
			pl.stickyIndex[id] = i
			pl.stickyCookies[i] = []byte(cookie + "=" + id + "; Path=/; HttpOnly; SameSite=Lax")
		}
	}
	return pl, nil
}

// publishedPool is pool name of the snapshot serving now, nil if none.
func (c *Controller) publishedPool(name string) *pool {
	if s := c.proxy.snap.Load(); s != nil {
		return s.pools[name]
	}
	return nil
}

// rampScale multiplies the weights a pool with slow_start hands its
// picker (HAProxy's BE_WEIGHT_SCALE), so that a ramp moves in steps finer
// than one weight unit and a backend of weight 1, the default, ramps too:
// from 1/16 to 16/16. Every share stays as the weights say (the pickers
// read weights as proportions). Not for ring_hash and maglev, whose points
// and slots follow the weights: scaled, keys would move between backends
// that are not ramping.
const rampScale = 16

// forgetSeries drops the metric series of routes and pools that are no
// longer configured, so that scrapes show no stale rows; but not while a
// backend that left with the pool drains: until then its series, the
// pool's and the removed routes' to it count its requests in flight and
// say it is draining, as for a backend that left a pool that stays.
func (c *Controller) forgetSeries() {
	gone := map[string]bool{}
	for k, n := range c.seriesRoutes {
		if c.routePairs[k] || c.leaving(k.pool, "") || n.Load() > 0 {
			continue
		}
		// Removed, or pointed at another pool, and done with: its rows
		// through that pool go (a route removed whole loses its latency
		// histogram too, below).
		c.Metrics.ForgetRoutePool(k.name, k.pool)
		delete(c.seriesRoutes, k)
		if !c.routeNames[k.name] {
			gone[k.name] = true
		}
	}
	for k := range c.seriesRoutes {
		delete(gone, k.name) // still in flight through another pool
	}
	for name := range gone {
		c.Metrics.ForgetRoute(name)
	}
	for name := range c.seriesPools {
		if c.cfg.Pools[name] == nil && !c.leaving(name, "") && !c.routesThrough(name) {
			c.Metrics.ForgetPool(name)
			delete(c.seriesPools, name)
		}
	}
}

// routesThrough reports whether a route through pool still has series
// (requests in flight through a pool a reload removed).
func (c *Controller) routesThrough(pool string) bool {
	for k := range c.seriesRoutes {
		if k.pool == pool {
			return true
		}
	}
	return false
}

// routesPending reports whether a removed or re-pointed route still waits
// for its requests in flight before its series go.
func (c *Controller) routesPending() bool {
	for k := range c.seriesRoutes {
		if !c.routePairs[k] {
			return true
		}
	}
	return false
}

// healthResult counts one probe result (probe goroutines call it).
func (c *Controller) healthResult(pool, addr string, ok bool) {
	if c.Metrics != nil {
		c.Metrics.Backend(pool, addr).HealthCheck(ok)
	}
}

func metricState(s string) metrics.State {
	switch s {
	case StateUnhealthy:
		return metrics.StateUnhealthy
	case StateDraining:
		return metrics.StateDraining
	case StateEjected:
		return metrics.StateEjected
	default:
		return metrics.StateHealthy
	}
}

// stickyID is the affinity cookie's value for a backend: its opaque id, or
// with a secret an HMAC of it, which cannot be matched to an address by
// hashing candidate addresses.
func stickyID(id, secret string) string {
	if secret == "" {
		return id
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil)[:12])
}

func (m *member) configWeight() uint32 {
	if m.adminWeight != nil {
		return *m.adminWeight
	}
	return m.weight
}
