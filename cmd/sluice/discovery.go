package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
	"sluice/discovery"
	"sluice/proxy"
)

// discoverers runs one DNS watcher per pool that has discovery, feeding the
// controller; reloads start, stop and restart them. The app's reload lock
// serialises every call.
type discoverers struct {
	log      zerolog.Logger
	ctrl     *proxy.Controller
	onError  func(pool string, err error)
	onStart  func(pool string) // a pool's watcher starts; may be nil
	onGone   func(pool string) // a pool kept by a reload lost its discovery; may be nil
	watchers map[string]*runningWatcher
}

type runningWatcher struct {
	cfg    config.DNSDiscovery
	cancel context.CancelFunc
	done   chan struct{}
	// first is closed once the first lookup has ended, its backends
	// applied or its error reported.
	first     chan struct{}
	firstOnce sync.Once
}

func (w *runningWatcher) firstDone() { w.firstOnce.Do(func() { close(w.first) }) }

// firstLookupWait bounds the wait for the first lookups at start: one
// lookup's own timeout (5 s at most) and then some.
const firstLookupWait = 6 * time.Second

// waitFirst waits until every watcher's first lookup has ended, or
// firstLookupWait has passed, or ctx ends, and reports whether all ended.
func (d *discoverers) waitFirst(ctx context.Context) bool {
	t := time.NewTimer(firstLookupWait)
	defer t.Stop()
	for _, w := range d.watchers {
		select {
		case <-w.first:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// seed is the first lookup of a DNS pool for a reload
// (proxy.Controller.ApplySeeded): the discovery it was resolved for, and
// the backends found, nil when the lookup failed.
type seed struct {
	cfg      config.DNSDiscovery
	backends []proxy.DiscoveredBackend
}

// needSeeds returns the DNS pools of cfg that have no running watcher or
// that look up something else now: a reload that routes traffic to one
// must not leave it empty, or on a former name's backends, until its
// watcher's first lookup. A pool whose lookup is the same (a new interval
// only) keeps its backends, as it does while DNS fails: seeded from a
// lookup that failed, a reload during a DNS outage emptied it (found by
// review). Under the app's reload lock.
func (d *discoverers) needSeeds(cfg *config.Config) map[string]config.DNSDiscovery {
	need := map[string]config.DNSDiscovery{}
	for _, pool := range cfg.PoolNames() {
		pc := cfg.Pools[pool]
		if pc.Discovery == nil || pc.Discovery.DNS == nil {
			continue
		}
		if w := d.watchers[pool]; w == nil || !w.cfg.SameLookup(*pc.Discovery.DNS) {
			need[pool] = *pc.Discovery.DNS
		}
	}
	return need
}

// resolve looks the pools in need up, once and at the same time, within
// firstLookupWait. It takes no lock.
func (d *discoverers) resolve(ctx context.Context, need map[string]config.DNSDiscovery) map[string]seed {
	ctx, cancel := context.WithTimeout(ctx, firstLookupWait)
	defer cancel()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = make(map[string]seed, len(need))
	)
	for pool, dc := range need {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Backends with an error: SRV targets left out, which the
			// watcher's own first lookup reports.
			found, _ := discovery.NewWatcher(pool, dc, discovery.WatcherOptions{Logger: d.log}).Resolve(ctx)
			s := seed{cfg: dc}
			if len(found) > 0 {
				s.backends = toDiscovered(found)
			}
			mu.Lock()
			out[pool] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// seedsFor returns, for the DNS pools of cfg that need a seed, what was
// resolved for their discovery as it is in cfg: the backends found, or an
// empty set when the lookup failed or the file changed since (the pool
// then starts empty and its watcher fills it, as at start). Under the
// app's reload lock.
func (d *discoverers) seedsFor(cfg *config.Config, pre map[string]seed) map[string][]proxy.DiscoveredBackend {
	out := map[string][]proxy.DiscoveredBackend{}
	for pool, dc := range d.needSeeds(cfg) {
		s, ok := pre[pool]
		if !ok || s.cfg != dc || s.backends == nil {
			d.log.Warn().Str("pool", pool).Msg("no first DNS lookup for a reloaded pool; it starts empty")
			out[pool] = nil
			continue
		}
		out[pool] = s.backends
	}
	return out
}

// toDiscovered is what a lookup found, as the controller takes it.
func toDiscovered(found []discovery.Backend) []proxy.DiscoveredBackend {
	out := make([]proxy.DiscoveredBackend, len(found))
	for i, b := range found {
		out[i] = proxy.DiscoveredBackend{Address: b.Address, Weight: b.Weight}
	}
	return out
}

// update makes the running watchers match cfg.
func (d *discoverers) update(cfg *config.Config) {
	if d.watchers == nil {
		d.watchers = map[string]*runningWatcher{}
	}
	for pool, w := range d.watchers {
		pc := cfg.Pools[pool]
		if pc == nil || pc.Discovery == nil || pc.Discovery.DNS == nil || *pc.Discovery.DNS != w.cfg {
			w.cancel()
			<-w.done
			delete(d.watchers, pool)
			if pc != nil && (pc.Discovery == nil || pc.Discovery.DNS == nil) && d.onGone != nil {
				d.onGone(pool)
			}
		}
	}
	for _, pool := range cfg.PoolNames() {
		pc := cfg.Pools[pool]
		if pc.Discovery == nil || pc.Discovery.DNS == nil || d.watchers[pool] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		rw := &runningWatcher{cfg: *pc.Discovery.DNS, cancel: cancel, done: make(chan struct{}), first: make(chan struct{})}
		w := discovery.NewWatcher(pool, rw.cfg, discovery.WatcherOptions{
			Logger: d.log,
			OnUpdate: func(u discovery.Update) {
				backends := toDiscovered(u.Backends)
				// Waits for the controller, never for this watcher's owner;
				// ends early when the watcher is stopped.
				if err := d.ctrl.SetDiscovered(ctx, u.Pool, rw.cfg, backends); err != nil && !errors.Is(err, proxy.ErrStopped) {
					d.log.Error().Err(err).Str("pool", u.Pool).Msg("discovered backends not applied")
				}
				rw.firstDone()
			},
			OnError: func(pool string, err error) {
				d.onError(pool, err)
				rw.firstDone()
			},
		})
		d.watchers[pool] = rw
		if d.onStart != nil {
			d.onStart(pool)
		}
		go func() { defer close(rw.done); w.Run(ctx) }()
	}
}

// stop ends every watcher and waits for them.
func (d *discoverers) stop() {
	for pool, w := range d.watchers {
		w.cancel()
		<-w.done
		delete(d.watchers, pool)
	}
}
