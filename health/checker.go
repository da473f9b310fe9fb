package health

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
)

// Defaults for checks and options left unset.
const (
	DefaultMaxConcurrent = 64
	defaultInterval      = 2 * time.Second
	defaultTimeout       = time.Second
	// maxFirstDelay bounds the jitter before a target's first probe.
	maxFirstDelay = time.Second
)

// Target is one backend to probe, identified by (Pool, Addr).
type Target struct {
	Pool  string
	Addr  string
	Check config.HealthCheck
	// Epoch is what the owner knows this run of probes by; each Event
	// carries it, so that the owner can drop one a run it has since
	// replaced sent (a backend removed and added back, checks removed).
	// A new Epoch starts the probes afresh.
	Epoch uint64
}

// CheckerOptions configures a Checker. Every field may be left zero.
type CheckerOptions struct {
	// Logger gets one line per transition.
	Logger zerolog.Logger
	// OnChange is called on each transition, from the probe goroutine of
	// the backend. It must be quick and must never wait for the goroutine
	// that calls Update or Close (which wait for the probe goroutines):
	// hand the Event over to the owner, for instance with Inbox.Put, or a
	// channel send that cannot block.
	OnChange func(Event)
	// OnResult, when set, is called after every probe (for metrics), from
	// the probe goroutine. The same rules as for OnChange apply.
	OnResult func(pool, addr string, ok bool)
	// MaxConcurrent bounds the probes in flight at once, over all
	// targets; <= 0 means DefaultMaxConcurrent. A probe's timeout starts
	// once it holds a slot.
	MaxConcurrent int
	// Rand returns a number in [0, 1) for the jitter; nil means
	// math/rand/v2's Float64. It is called from many goroutines at once.
	Rand func() float64
}

// Checker runs active health checks: one goroutine per target, which probes
// at once (after a small jitter) and then every Interval ±10%, measured from
// the end of the previous probe, so probes of one backend never overlap and
// a slow backend does not pile them up. Each probe is bounded by the check's
// Timeout. An http check GETs Path (with Host, when set) on a new
// connection and succeeds when the status is in ExpectStatus (200-399 when
// empty); a tcp check only connects.
//
// States: a new target starts healthy but unknown, as the owner should also
// treat a new backend, so that it takes traffic at once. While still
// unknown, a first failed probe makes it unhealthy at once (fast fail for
// new instances, reported like any transition), while a first success only
// confirms it healthy, with no Event. From then on it takes HealthyThreshold
// consecutive successes to become healthy and UnhealthyThreshold
// consecutive failures to become unhealthy. Only transitions are reported,
// through OnChange, each with one log line.
type Checker struct {
	log           zerolog.Logger
	onChange      func(Event)
	onResult      func(pool, addr string, ok bool)
	rand          func() float64
	sem           chan struct{}
	mu            sync.Mutex // serialises Update and Close
	probes        map[targetKey]*probeLoop
	closed        bool
	probesStarted int // total ever started; tests check restarts with it
}

type targetKey struct{ pool, addr string }

type state uint8

const (
	stateUnknown state = iota // healthy, not yet probed
	stateHealthy
	stateUnhealthy
)

// probeLoop is the goroutine probing one target. Only that goroutine
// touches the fields below done until done is closed.
type probeLoop struct {
	target Target
	cancel context.CancelFunc
	done   chan struct{}

	state      state
	successes  int
	failures   int
	rise, fall int
	reason     string // the last failure's, reported while unhealthy
}

// NewChecker returns a Checker with no targets.
func NewChecker(opts CheckerOptions) *Checker {
	n := opts.MaxConcurrent
	if n <= 0 {
		n = DefaultMaxConcurrent
	}
	c := &Checker{
		log:      opts.Logger,
		onChange: opts.OnChange,
		onResult: opts.OnResult,
		rand:     opts.Rand,
		sem:      make(chan struct{}, n),
		probes:   make(map[targetKey]*probeLoop),
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	return c
}

// Update makes targets the set of backends probed: it starts probing the
// new ones, stops the ones no longer listed (and waits for them), and
// restarts the ones whose Check changed, keeping their health state so that
// no Event is lost or repeated. Of duplicate (Pool, Addr), the last wins.
// Update sends no Event itself. It is for the control plane and may block
// briefly: a probe in flight is cut short, but a running OnChange or
// OnResult is waited for. After Close it does nothing.
func (c *Checker) Update(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	want := make(map[targetKey]Target, len(targets))
	for _, t := range targets {
		want[targetKey{t.Pool, t.Addr}] = t
	}
	// Stop first, all at once, then wait: stopping takes one round trip
	// of the scheduler, not one per probe.
	var stopped []*probeLoop
	restart := make(map[targetKey]*probeLoop)
	for k, p := range c.probes {
		t, ok := want[k]
		if ok && sameCheck(t.Check, p.target.Check) && t.Epoch == p.target.Epoch {
			continue
		}
		p.cancel()
		stopped = append(stopped, p)
		delete(c.probes, k)
		if ok && t.Epoch == p.target.Epoch {
			restart[k] = p // a changed check keeps what is known
		}
	}
	for _, p := range stopped {
		<-p.done
	}
	for k, t := range want {
		if _, ok := c.probes[k]; ok {
			continue
		}
		c.start(k, t, restart[k])
	}
}

// Close stops every probe and waits for them. It is safe to call twice.
func (c *Checker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, p := range c.probes {
		p.cancel()
	}
	for k, p := range c.probes {
		<-p.done
		delete(c.probes, k)
	}
}

// start starts the probe loop of target t; from, when not nil, is the
// stopped loop of the same target whose check changed: its state and its
// streak of successes or failures carry over (a reload that reset the
// streak kept a failing backend in rotation for another
// unhealthy_threshold probes, each time: found by review).
func (c *Checker) start(k targetKey, t Target, from *probeLoop) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probeLoop{
		target: t,
		cancel: cancel,
		done:   make(chan struct{}),
		state:  stateUnknown,
		rise:   max(t.Check.HealthyThreshold, 1),
		fall:   max(t.Check.UnhealthyThreshold, 1),
	}
	if from != nil {
		p.state, p.successes, p.failures, p.reason = from.state, from.successes, from.failures, from.reason
	}
	c.probes[k] = p
	c.probesStarted++
	go c.run(ctx, p)
}

// run is the probe goroutine of one target.
func (c *Checker) run(ctx context.Context, p *probeLoop) {
	defer close(p.done)
	interval := p.target.Check.Interval
	if interval <= 0 {
		interval = defaultInterval
	}
	pr := newProber(p.target)
	timer := time.NewTimer(time.Duration(c.rand() * float64(min(interval/10, maxFirstDelay))))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		ok, reason, stopped := c.probeOnce(ctx, pr)
		if stopped {
			return
		}
		if c.onResult != nil {
			c.onResult(p.target.Pool, p.target.Addr, ok)
		}
		c.observe(p, ok, reason)
		// ±10%: spreads probes that started together.
		timer.Reset(time.Duration(float64(interval) * (0.9 + 0.2*c.rand())))
	}
}

// probeOnce waits for a slot and sends one probe. stopped is true when ctx
// ended first; the result then means nothing.
func (c *Checker) probeOnce(ctx context.Context, pr *prober) (ok bool, reason string, stopped bool) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return false, "", true
	}
	ok, reason = pr.probe(ctx)
	<-c.sem
	return ok, reason, ctx.Err() != nil
}

// observe folds one result into the rise/fall state and reports a
// transition.
func (c *Checker) observe(p *probeLoop, ok bool, reason string) {
	if ok {
		p.failures = 0
		p.successes++
	} else {
		p.successes = 0
		p.failures++
	}
	switch p.state {
	case stateUnknown:
		if ok {
			p.state = stateHealthy
			return
		}
		c.transition(p, false, reason)
	case stateHealthy:
		if !ok && p.failures >= p.fall {
			c.transition(p, false, reason)
		}
	case stateUnhealthy:
		switch {
		case ok && p.successes >= p.rise:
			c.transition(p, true, reason)
		case !ok && reason != p.reason && c.onChange != nil:
			// Still unhealthy, for another reason: the admin API shows
			// the last probe's, not the first (found by review: a backend
			// marked down for "status 503" that then stopped listening
			// still showed "status 503"). No log line: not a transition.
			p.reason = reason
			t := p.target
			c.onChange(Event{Pool: t.Pool, Addr: t.Addr, Healthy: false, Reason: reason, Source: SourceActive, Epoch: t.Epoch})
		}
	}
}

func (c *Checker) transition(p *probeLoop, healthy bool, reason string) {
	p.successes, p.failures = 0, 0
	t := p.target
	if healthy {
		p.state = stateHealthy
		c.log.Info().Str("pool", t.Pool).Str("backend", t.Addr).Str("reason", reason).
			Str("source", SourceActive).Msg("backend healthy")
	} else {
		p.state, p.reason = stateUnhealthy, reason
		c.log.Warn().Str("pool", t.Pool).Str("backend", t.Addr).Str("reason", reason).
			Str("source", SourceActive).Msg("backend unhealthy")
	}
	if c.onChange != nil {
		c.onChange(Event{Pool: t.Pool, Addr: t.Addr, Healthy: healthy, Reason: reason, Source: SourceActive, Epoch: t.Epoch})
	}
}

func sameCheck(a, b config.HealthCheck) bool {
	return a.Type == b.Type && a.Path == b.Path && a.Host == b.Host &&
		a.Interval == b.Interval && a.Timeout == b.Timeout &&
		a.HealthyThreshold == b.HealthyThreshold &&
		a.UnhealthyThreshold == b.UnhealthyThreshold &&
		slices.Equal(a.ExpectStatus, b.ExpectStatus)
}
