package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"sluice/balancer"
	"sluice/config"
)

// Controller is the control plane. One goroutine (Run) owns every piece of
// mutable pool state — the running config, the upstreams by identity, the
// ones draining — and is the only writer of the proxy's snapshot. Other
// goroutines ask it to change things by sending it a function to run.
type Controller struct {
	proxy *Proxy
	log   zerolog.Logger
	cmds  chan func()
	// tick is how often timed work (drain completion) is checked.
	tick time.Duration
	// Dial, when set before Run, replaces TCP dialing to upstreams
	// (benchmarks over in-memory listeners).
	Dial func(addr string) (net.Conn, error)

	// Owned by the Run goroutine.
	cfg      *config.Config
	gen      uint64
	members  map[memberKey]*member
	draining []*draining
}

type memberKey struct{ pool, addr string }

// member is one backend of one pool and the control-plane state about it.
type member struct {
	up       *upstream
	settings clientSettings
	weight   uint32
	order    int
}

// draining is an upstream that left: it takes no new requests and is
// freed once its in-flight requests finish, or at its deadline.
type draining struct {
	up       *upstream
	deadline time.Time
}

// ErrStopped is returned by calls made after the controller stopped.
var ErrStopped = errors.New("proxy: controller stopped")

// NewController returns a controller publishing to p. Call Run.
func NewController(p *Proxy, log zerolog.Logger) *Controller {
	return &Controller{
		proxy:   p,
		log:     log,
		cmds:    make(chan func()),
		tick:    100 * time.Millisecond,
		members: map[memberKey]*member{},
	}
}

// Run owns the control state until ctx is done, then closes every
// upstream's idle connections and returns.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, m := range c.members {
				m.up.client.CloseIdleConnections()
			}
			for _, d := range c.draining {
				d.up.client.CloseIdleConnections()
			}
			return
		case f := <-c.cmds:
			f()
		case now := <-t.C:
			c.finishDrains(now)
		}
	}
}

// do runs f on the control goroutine and waits for it.
func (c *Controller) do(ctx context.Context, f func() error) error {
	errc := make(chan error, 1)
	select {
	case c.cmds <- func() { errc <- f() }:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrStopped, ctx.Err())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrStopped, ctx.Err())
	}
}

// Apply makes cfg the running config: backends that stay keep their
// counters and connections, new ones are added, vanished ones drain.
func (c *Controller) Apply(ctx context.Context, cfg *config.Config) error {
	return c.do(ctx, func() error { return c.apply(cfg) })
}

func (c *Controller) apply(cfg *config.Config) error {
	settings := settingsOf(cfg)
	seen := make(map[memberKey]bool)
	for _, name := range cfg.PoolNames() {
		pc := cfg.Pools[name]
		for i, b := range pc.Backends {
			k := memberKey{name, b.Address}
			seen[k] = true
			m, ok := c.members[k]
			if ok && m.settings != settings {
				// New timeouts or limits need a new client; the old one
				// finishes what it has in flight, like a leaving backend.
				c.drain(m.up, cfg.DrainTimeout)
				fresh := newUpstream(name, b.Address, settings, c.Dial)
				fresh.backend = m.up.backend // counters carry over
				m.up, m.settings = fresh, settings
			}
			if !ok {
				m = &member{up: newUpstream(name, b.Address, settings, c.Dial), settings: settings}
				c.members[k] = m
				c.log.Info().Str("pool", name).Str("backend", b.Address).Msg("backend added")
			}
			m.weight = uint32(b.Weight)
			m.order = i
		}
	}
	for k, m := range c.members {
		if !seen[k] {
			delete(c.members, k)
			c.drain(m.up, cfg.DrainTimeout)
			c.log.Info().Str("pool", k.pool).Str("backend", k.addr).Msg("backend removed, draining")
		}
	}
	c.cfg = cfg
	return c.publish()
}

// drain takes up out of service: it is already absent from the next
// snapshot; its connections are closed once idle.
func (c *Controller) drain(up *upstream, timeout time.Duration) {
	c.draining = append(c.draining, &draining{up: up, deadline: time.Now().Add(timeout)})
}

func (c *Controller) finishDrains(now time.Time) {
	kept := c.draining[:0]
	for _, d := range c.draining {
		if d.up.backend.InFlight() > 0 && now.Before(d.deadline) {
			kept = append(kept, d)
			continue
		}
		d.up.client.CloseIdleConnections()
		c.log.Info().Str("pool", d.up.backend.Pool).Str("backend", d.up.backend.Addr).
			Int64("in_flight", d.up.backend.InFlight()).Msg("backend drained")
	}
	clear(c.draining[len(kept):])
	c.draining = kept
}

// publish builds a snapshot from the control state and swaps it in.
func (c *Controller) publish() error {
	s, err := c.build()
	if err != nil {
		return err
	}
	c.proxy.Publish(s)
	return nil
}

func (c *Controller) build() (*Snapshot, error) {
	cfg := c.cfg
	c.gen++
	s := &Snapshot{
		Generation:      c.gen,
		pools:           make(map[string]*pool, len(cfg.Pools)),
		preserveHost:    cfg.PreserveHost,
		responseTimeout: cfg.Timeouts.Response,
		attempts:        cfg.Retries.Attempts,
	}
	byPool := map[string][]*member{}
	for k, m := range c.members {
		byPool[k.pool] = append(byPool[k.pool], m)
	}
	for _, name := range cfg.PoolNames() {
		pl, err := c.buildPool(name, cfg.Pools[name], byPool[name], cfg)
		if err != nil {
			return nil, err
		}
		s.pools[name] = pl
	}
	routes := make([]*route, len(cfg.Routes))
	hosts := make([]string, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		routes[i] = &route{name: routeName(rc), prefix: []byte(rc.Match.PathPrefix), pool: s.pools[rc.Pool]}
		hosts[i] = rc.Match.Host
	}
	s.routes = newRouteTable(routes, hosts)
	return s, nil
}

func routeName(rc config.Route) string {
	p := rc.Match.PathPrefix
	if p == "" {
		p = "/"
	}
	return rc.Match.Host + p
}

func (c *Controller) buildPool(name string, pc *config.Pool, members []*member, cfg *config.Config) (*pool, error) {
	sortMembers(members)
	hk, err := config.ParseHashKey(pc.HashKey)
	if err != nil {
		return nil, err
	}
	pl := &pool{name: name, hashKey: hk, hashName: []byte(hk.Name), preserveHost: cfg.PreserveHost}
	if pc.PreserveHost != nil {
		pl.preserveHost = *pc.PreserveHost
	}
	targets := make([]balancer.Target, 0, len(members))
	for _, m := range members {
		if m.weight == 0 {
			continue // weight 0: stays a member, takes no new requests
		}
		pl.targets = append(pl.targets, m.up)
		targets = append(targets, balancer.Target{Backend: m.up.backend, Weight: m.weight})
	}
	algorithm := pc.Algorithm
	cookie := ""
	if pc.Sticky != nil {
		cookie = pc.Sticky.Cookie
	}
	if algorithm == "sticky" {
		algorithm = "p2c"
		if cookie == "" {
			cookie = "sluice_affinity"
		}
	}
	pl.picker, err = balancer.Build(algorithm, targets, balancer.Options{
		Seed:            rand.Uint64(),
		EWMAWindow:      pc.EWMAWindow,
		MaglevTableSize: pc.MaglevTableSize,
	})
	if err != nil {
		return nil, err
	}
	if cookie != "" {
		pl.sticky = []byte(cookie)
		pl.stickyIndex = make(map[string]int, len(pl.targets))
		pl.stickyCookies = make([][]byte, len(pl.targets))
		for i, up := range pl.targets {
			pl.stickyIndex[up.backend.ID] = i
			pl.stickyCookies[i] = []byte(cookie + "=" + up.backend.ID + "; Path=/; HttpOnly; SameSite=Lax")
		}
	}
	return pl, nil
}

// sortMembers puts a pool's members in config order, so a rebuild from the
// same config yields the same picker.
func sortMembers(ms []*member) {
	slices.SortFunc(ms, func(a, b *member) int { return a.order - b.order })
}
