// Package discovery finds the backends of a pool at run time by
// re-resolving a DNS name. It is control plane only: a Watcher owns no state
// that the proxy reads; it hands each new set of backends to its owner,
// which rebuilds the snapshots.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"sluice/config"
)

const (
	// DefaultInterval is the re-resolve interval when the config has none.
	DefaultInterval = 5 * time.Second
	// maxLookupTimeout and minLookupTimeout bound one Resolve: the
	// timeout is the interval, clamped to [min, max].
	maxLookupTimeout = 5 * time.Second
	minLookupTimeout = time.Second
	// targetLookups bounds the SRV target lookups in flight at once.
	targetLookups = 8
)

// ErrNoBackends says that a lookup found records but no usable backend:
// SRV records whose targets are all "." or whose ports are all 0, say. A
// name with no records fails with Go's *net.DNSError (IsNotFound) instead.
var ErrNoBackends = errors.New("no backends in the answer")

// Backend is one resolved backend.
type Backend struct {
	// Address is host:port, an IPv6 host in brackets.
	Address string
	// Weight is 1 for A and AAAA records and the record weight for SRV
	// (see Watcher); it is always at least 1.
	Weight int
}

// Update is a new set of backends for a pool.
type Update struct {
	Pool string
	// Backends is the whole set, sorted by Address, never empty. It is the
	// receiver's to keep.
	Backends []Backend
	// Err is nil unless the answer was partial: some SRV targets had no
	// address (NXDOMAIN or no A/AAAA records) and were left out. Backends
	// is still the set to use; Err only says what is missing. Failed
	// lookups never make an Update (see WatcherOptions.OnError).
	Err error
}

// WatcherOptions configures a Watcher. Every field may be left zero.
type WatcherOptions struct {
	// Logger gets one line per change of the set, per new kind of
	// failure, and per recovery.
	Logger zerolog.Logger
	// OnUpdate is called from the Run goroutine after the first successful
	// lookup and after every lookup whose set differs from the last one
	// handed over. It must be quick, and must never wait for the goroutine
	// that cancels Run's context and waits for Run to return: hand the
	// Update over to the owner.
	OnUpdate func(Update)
	// OnError, when set, is called from the Run goroutine after every
	// failed lookup (for metrics), with the same rules as OnUpdate. A
	// lookup fails when it returns an error or no address at all; the last
	// good set is then kept and no Update is made.
	OnError func(pool string, err error)
}

// Watcher re-resolves a pool's DNS name and reports when its set of
// backends changes. Sets are compared as sorted (Address, Weight) lists, so
// a reordered answer is no change.
//
// Type A looks up both A and AAAA records, and makes one backend of weight 1
// per address, at the configured port. A lookup is whole or failed: if
// either query fails (timeout, SERVFAIL, REFUSED), the lookup fails, while
// a family with no records (NXDOMAIN or an empty answer) just has no
// addresses. Type SRV looks up the full SRV name
// (for example _http._tcp.api.service.consul) and resolves each target host
// through the same resolver, A and AAAA; the port is the record's. Only the
// records of the lowest priority value that yield an address are used (the
// others are backups per RFC 2782, and this package does not fail over to
// them on health). A record's weight becomes the backend weight, except that
// 0 becomes 1: RFC 2782 selection gives a zero-weight record a chance of
// 1/(sum+1), the same as weight 1 among the others' raw weights, and 0 in
// sluice would mean no traffic at all. A target with both A and AAAA records
// makes one backend per address, each with the record's weight. Records
// that lead to the same address add their weights up. Records with target
// "." (no service, RFC 2782) or port 0 are skipped. A target that is not
// found (NXDOMAIN, or no
// address records) is left out, and the Update says so in Err; a target
// lookup that fails otherwise (timeout, SERVFAIL, for A or AAAA) fails the
// whole lookup.
type Watcher struct {
	pool     string
	cfg      config.DNSDiscovery
	timeout  time.Duration
	resolver *net.Resolver
	log      zerolog.Logger
	onUpdate func(Update)
	onError  func(pool string, err error)

	// Only the Run goroutine touches these.
	last    []Backend // last set handed over; nil before the first
	lastErr string    // text of the last failure; "" while lookups succeed
}

// NewWatcher returns a Watcher for the pool's discovery config. An Interval
// <= 0 means DefaultInterval and an empty Type means A. With Resolver set,
// every query goes to that server (UDP, then TCP when an answer is
// truncated) through Go's resolver; otherwise the system's resolver
// configuration is used.
func NewWatcher(pool string, cfg config.DNSDiscovery, opts WatcherOptions) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	cfg.Type = strings.ToUpper(cfg.Type)
	if cfg.Type == "" {
		cfg.Type = "A"
	}
	timeout := min(max(cfg.Interval, minLookupTimeout), maxLookupTimeout)
	w := &Watcher{
		pool:    pool,
		cfg:     cfg,
		timeout: timeout,
		resolver: &net.Resolver{
			PreferGo: cfg.Resolver != "",
			// A timeout or SERVFAIL while walking the search list ends
			// the lookup, rather than letting a later name answer.
			StrictErrors: true,
			// Each try gets at most half the lookup's time (and
			// 1 s), so that a lost query is asked again within it.
			Dial: dialer(cfg.Resolver, min(timeout/2, time.Second)),
		},
		log:      opts.Logger,
		onUpdate: opts.OnUpdate,
		onError:  opts.OnError,
	}
	return w
}

// dialer returns the Dial of a net.Resolver that sends every query to
// server, or where Go's resolver says when server is empty; the network
// ("udp", or "tcp" after a truncated answer) is the resolver's choice;
// each try is bounded by perTry (see checkedConn.SetDeadline).
//
// Go's resolver bounds a query by the context's deadline but does not see
// its cancellation, so a cancelled lookup would wait for its timeout: the
// connection is closed as soon as the context ends instead. The resolver
// ends that context after each query, so nothing outlives it.
func dialer(server string, perTry time.Duration) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if server != "" {
			address = server
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { c.Close() })
		return checked(c, network, perTry), nil
	}
}

// Run resolves at once, then again every Interval ±10% after the end of the
// previous lookup, each lookup bounded by the Interval clamped to 1s-5s. It
// returns when ctx is done, having cut short a lookup in flight. Call it
// once, on a goroutine of the caller's.
func (w *Watcher) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		w.poll(ctx)
		timer.Reset(jitter(w.cfg.Interval))
	}
}

// jitter returns d ±10%, so that many proxies do not query in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

func (w *Watcher) poll(ctx context.Context) {
	lookupCtx, cancel := context.WithTimeout(ctx, w.timeout)
	backends, err := w.Resolve(lookupCtx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: not a failure
	}
	if len(backends) == 0 {
		w.fail(err)
		return
	}
	if w.lastErr != "" {
		w.lastErr = ""
		w.log.Info().Str("pool", w.pool).Str("name", w.cfg.Name).Msg("dns lookup recovered")
	}
	if w.last != nil && slices.Equal(backends, w.last) {
		return
	}
	w.last = backends
	ev := w.log.Info()
	if err != nil {
		ev = w.log.Warn().Err(err)
	}
	ev.Str("pool", w.pool).Str("name", w.cfg.Name).Int("backends", len(backends)).Msg("dns backends changed")
	if w.onUpdate != nil {
		w.onUpdate(Update{Pool: w.pool, Backends: slices.Clone(backends), Err: err})
	}
}

// portNumbers matches the port after an IPv4 address or a bracketed IPv6
// one in an error's text (not the all-digit groups of an IPv6 address,
// which tell servers apart: found by review).
var portNumbers = regexp.MustCompile(`((?:[0-9]{1,3}\.){3}[0-9]{1,3}|\]):[0-9]+`)

// sameFailureKey is err's text without port numbers: two failures are the
// same failure when their keys are equal. A refused query names the
// random local port it was sent from ("read udp 127.0.0.1:55277->
// 127.0.0.1:53: ... connection refused"), which made every repeat a new
// failure logged at warn level (found by review).
func sameFailureKey(err error) string {
	return portNumbers.ReplaceAllString(err.Error(), "${1}:")
}

// fail reports a failed lookup: to OnError every time, to the log at warn
// level when the error differs from the previous one (sameFailureKey),
// else at debug level.
func (w *Watcher) fail(err error) {
	if w.onError != nil {
		w.onError(w.pool, err)
	}
	ev := w.log.Warn()
	if msg := sameFailureKey(err); msg == w.lastErr {
		ev = w.log.Debug()
	} else {
		w.lastErr = msg
	}
	ev.Str("pool", w.pool).Str("name", w.cfg.Name).Err(err).Int("backends_kept", len(w.last)).
		Msg("dns lookup failed, keeping the last good set")
}

// Resolve does one lookup and returns the backends sorted by Address. The
// error is not nil when no backend was found; it is also not nil, along
// with backends, when some SRV targets were not found and left out. Resolve
// may be called from any goroutine, Run's included.
func (w *Watcher) Resolve(ctx context.Context) ([]Backend, error) {
	var set map[string]int
	var err error
	switch w.cfg.Type {
	case "A":
		set, err = w.resolveA(ctx)
	case "SRV":
		set, err = w.resolveSRV(ctx)
	default:
		err = fmt.Errorf("unsupported type %q", w.cfg.Type)
	}
	if err != nil {
		err = fmt.Errorf("discovery: %s %s: %w", w.cfg.Type, w.cfg.Name, err)
	}
	if len(set) == 0 {
		if err == nil {
			err = fmt.Errorf("discovery: %s %s: %w", w.cfg.Type, w.cfg.Name, ErrNoBackends)
		}
		return nil, err
	}
	backends := make([]Backend, 0, len(set))
	for addr, weight := range set {
		backends = append(backends, Backend{Address: addr, Weight: weight})
	}
	slices.SortFunc(backends, func(a, b Backend) int { return cmp.Compare(a.Address, b.Address) })
	return backends, err
}

// lookupIP returns the A and AAAA addresses of host, or an error if either
// query fails. The two families are asked apart because Go's "ip" lookup
// returns what one query found when the other fails: a SERVFAIL for AAAA
// alone would silently drop every IPv6 backend. A family with no records
// (an authoritative "no such name" or an empty answer) is not a failure;
// when neither has any, the error is a *net.DNSError with IsNotFound set.
func (w *Watcher) lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	var v6 []netip.Addr
	var err6 error
	var wg sync.WaitGroup
	wg.Go(func() { v6, err6 = w.resolver.LookupNetIP(ctx, "ip6", host) })
	v4, err4 := w.resolver.LookupNetIP(ctx, "ip4", host)
	wg.Wait()
	none4, none6 := noRecords(err4), noRecords(err6)
	switch {
	case err4 != nil && !none4:
		return nil, w.withServer(err4)
	case err6 != nil && !none6:
		return nil, w.withServer(err6)
	case none4 && none6:
		var dnsErr *net.DNSError
		if !errors.As(err4, &dnsErr) && !errors.As(err6, &dnsErr) {
			dnsErr = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return nil, w.withServer(dnsErr)
	}
	return append(v4, v6...), nil
}

// noRecords reports whether a lookup of one family failed only because the
// host has no address of that family: the DNS answered "no such name" or
// "no records", or /etc/hosts, which answers for both families at once,
// listed addresses of the other family only (a *net.AddrError, which Go
// returns for nothing else here).
func noRecords(err error) bool {
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound || errors.As(err, &addrErr)
}

// withServer names the configured server in a DNS error: Go's resolver
// names the one in resolv.conf, which our Dial does not use.
func (w *Watcher) withServer(err error) error {
	dnsErr, ok := err.(*net.DNSError)
	if !ok || w.cfg.Resolver == "" {
		return err
	}
	// Copy rather than change it: the lookup may share it with another.
	named := *dnsErr
	named.Server = w.cfg.Resolver
	return &named
}

func (w *Watcher) resolveA(ctx context.Context) (map[string]int, error) {
	addrs, err := w.lookupIP(ctx, w.cfg.Name)
	if err != nil {
		return nil, err
	}
	set := make(map[string]int, len(addrs))
	port := strconv.Itoa(w.cfg.Port)
	for _, a := range addrs {
		set[net.JoinHostPort(a.Unmap().String(), port)] = 1
	}
	return set, nil
}

func (w *Watcher) resolveSRV(ctx context.Context) (map[string]int, error) {
	_, records, err := w.resolver.LookupSRV(ctx, "", "", w.cfg.Name)
	err = w.withServer(err)
	if len(records) == 0 {
		return nil, err
	}
	// Go returns the valid records along with an error when some were
	// malformed: use them, and report the rest like missing targets.
	var missing []error
	if err != nil {
		missing = append(missing, err)
	}
	// "." as the target says there is no such service here (RFC 2782);
	// port 0 cannot be dialled.
	records = slices.DeleteFunc(records, func(r *net.SRV) bool {
		return r.Target == "." || r.Target == "" || r.Port == 0
	})
	slices.SortStableFunc(records, func(a, b *net.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	for group := range groupByPriority(records) {
		addrs, errs, err := w.lookupTargets(ctx, group)
		if err != nil {
			return nil, err
		}
		missing = append(missing, errs...)
		set := make(map[string]int)
		for _, r := range group {
			for _, a := range addrs[r.Target] {
				set[net.JoinHostPort(a.Unmap().String(), strconv.Itoa(int(r.Port)))] += max(int(r.Weight), 1)
			}
		}
		if len(set) > 0 {
			return set, errors.Join(missing...)
		}
	}
	return nil, errors.Join(missing...)
}

// groupByPriority yields runs of records sorted by priority, one run per
// priority value.
func groupByPriority(records []*net.SRV) func(yield func([]*net.SRV) bool) {
	return func(yield func([]*net.SRV) bool) {
		for len(records) > 0 {
			n := 1
			for n < len(records) && records[n].Priority == records[0].Priority {
				n++
			}
			if !yield(records[:n]) {
				return
			}
			records = records[n:]
		}
	}
}

// lookupTargets resolves each distinct target, a few at a time. Targets not
// found come back in missing; any other failure is returned as err.
func (w *Watcher) lookupTargets(ctx context.Context, records []*net.SRV) (addrs map[string][]netip.Addr, missing []error, err error) {
	var targets []string
	seen := make(map[string]bool, len(records))
	for _, r := range records {
		if !seen[r.Target] {
			seen[r.Target] = true
			targets = append(targets, r.Target)
		}
	}
	// In name order: Go shuffles records of one priority by weight, and
	// the first failing target (err) and the list of missing ones must
	// read the same for the same outage, or each lookup logged it anew at
	// warn level (sameFailureKey; found by review).
	slices.Sort(targets)
	type result struct {
		addrs []netip.Addr
		err   error
	}
	results := make([]result, len(targets))
	var wg sync.WaitGroup
	slots := make(chan struct{}, targetLookups)
	for i, target := range targets {
		// The slot is taken before the goroutine starts, so a large SRV
		// answer never has more than targetLookups goroutines at once.
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			results[i].addrs, results[i].err = w.lookupIP(ctx, target)
		})
	}
	wg.Wait()
	addrs = make(map[string][]netip.Addr, len(targets))
	for i, res := range results {
		var dnsErr *net.DNSError
		switch {
		case res.err == nil:
			addrs[targets[i]] = res.addrs
		case errors.As(res.err, &dnsErr) && dnsErr.IsNotFound:
			missing = append(missing, fmt.Errorf("target %s: %w", targets[i], res.err))
		default:
			return nil, nil, fmt.Errorf("target %s: %w", targets[i], res.err)
		}
	}
	return addrs, missing, nil
}
