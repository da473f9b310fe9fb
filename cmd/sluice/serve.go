package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"sluice/accesslog"
	"sluice/admin"
	"sluice/config"
	"sluice/metrics"
	"sluice/netconn"
	"sluice/proxy"
)

type options struct {
	configPath string
	pprofAddr  string
	stderr     io.Writer
	// override, when set, adapts every loaded config (worker processes).
	override func(*config.Config) error
	// ready, when set, is called once serve catches its signals (a
	// worker tells its supervisor, which holds signals until then).
	ready func()
	// serving, when set, is called once the listeners are up (sluice
	// demo then prints what to try: before, its banner came even when
	// the port was taken, found by review).
	serving func()
	// worker is the process's worker index under -workers, -1 for a
	// single sluice: each log line names it, as the workers share one
	// stderr (found by a walkthrough: two identical lines, no telling
	// which worker wrote which).
	worker int
}

// app is one running sluice: its listeners, servers and control plane.
type app struct {
	opts options
	// lastTry is the file content the last reload read, from any
	// trigger, and the running config's it left (watchConfig skips
	// content tried already).
	lastTry atomic.Pointer[reloadTry]
	log     zerolog.Logger
	proxy   *proxy.Proxy
	ctrl    *proxy.Controller
	// metrics is the process's own Prometheus registry and series.
	metrics *metrics.Metrics
	// access is the running access log (nil when off); reloadMu guards it.
	access *accesslog.Logger
	disc   *discoverers
	// front and admin are the current servers; reloadMu guards them.
	front *server
	admin *server
	// retiring counts replaced servers still finishing their requests.
	retiring sync.WaitGroup
	// refused counts the front servers' refused connections.
	refused refusals
	// stopping is set (under reloadMu) once shutdown starts.
	stopping bool

	// cfg is the config currently served; only the reload path writes it.
	cfg atomic.Pointer[config.Config]
	// reloadMu serialises reloads (SIGHUP, admin API, file watcher) and
	// guards the reload history below.
	reloadMu    sync.Mutex
	generation  uint64
	loadedAt    time.Time
	lastErr     string
	lastErrTime time.Time
	// ready turns false the moment shutdown starts (readiness probe).
	ready atomic.Bool
	// frontNow is the front server serving now, for the readiness probe
	// (a.front is the reload path's).
	frontNow atomic.Pointer[server]
	// watch is the config file watcher's while watch_config is on;
	// reloadMu guards it. watchers counts the watcher goroutines, stopped
	// ones included until they return.
	watch    *fileWatch
	watchers sync.WaitGroup
	// serveCtx is serve's context, which ends as shutdown begins:
	// watchers started by a reload run under it, and admin reloads end
	// with it.
	serveCtx context.Context
}

// fileWatch is one running config file watcher.
type fileWatch struct{ cancel context.CancelFunc }

// preResolve loads the config file and resolves the DNS pools in it that
// the reload would start watchers for (discoverers.seeds); nil when the
// file does not load. It takes the reload lock only to read which pools
// those are.
func (a *app) preResolve(ctx context.Context) map[string]seed {
	cfg, err := loadConfig(a.opts.configPath, a.opts.override)
	if err != nil {
		return nil
	}
	a.reloadMu.Lock()
	need := a.disc.needSeeds(cfg)
	a.reloadMu.Unlock()
	return a.disc.resolve(ctx, need)
}

// setWatch starts or stops the config file watcher (watch_config), under
// reloadMu. Stopping does not wait: the watcher's own reload may be the
// one turning it off; serve waits for every watcher before it returns.
func (a *app) setWatch(ctx context.Context, on bool) {
	switch {
	case on && a.watch == nil && a.opts.configPath != "":
		wctx, cancel := context.WithCancel(ctx)
		a.watch = &fileWatch{cancel: cancel}
		w := openWatch(a.opts.configPath, a.log)
		if w == nil {
			return
		}
		a.watchers.Add(1)
		go func() {
			defer a.watchers.Done()
			watchConfig(wctx, w, a.opts.configPath, 250*time.Millisecond,
				func() []byte { return a.cfg.Load().Source }, a.lastTried,
				func() { _ = a.reload(wctx, "file_change") }, a.settleReload, a.log)
		}()
	case !on && a.watch != nil:
		a.watch.cancel()
		a.watch = nil
	}
}

func newLogger(w io.Writer, c config.Log) zerolog.Logger {
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	console := c.Format == "console"
	if c.Format == "auto" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// serve runs sluice with cfg until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, cfg *config.Config, opts options) int {
	// Signals first: a reload or log reopen sent during startup must not
	// kill the process (their default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	if opts.ready != nil {
		opts.ready()
	}

	log := newLogger(opts.stderr, cfg.Log)
	if opts.worker >= 0 {
		log = log.With().Int("worker", opts.worker).Logger()
	}
	a := &app{opts: opts, log: log, proxy: proxy.New(), metrics: metrics.New(version), serveCtx: ctx}
	a.ctrl = proxy.NewController(a.proxy, a.log)
	a.ctrl.Metrics = a.metrics
	a.metrics.CountRefusedConns(a.refused.total)
	a.disc = &discoverers{log: a.log, ctrl: a.ctrl, onError: func(pool string, _ error) { a.metrics.DiscoveryError(pool) },
		onStart: a.metrics.DiscoveryPool, onGone: a.metrics.ForgetDiscovery}
	a.cfg.Store(cfg)
	a.generation, a.loadedAt = 1, time.Now()

	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.ctrl.Run(ctrlCtx) }()
	defer func() { stopCtrl(); wg.Wait() }()

	applyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.ctrl.Apply(applyCtx, cfg)
	cancel()
	if err != nil {
		return a.startFailed(ctx, err, "config apply failed")
	}
	if err := a.setAccessLog(cfg); err != nil {
		return a.startFailed(ctx, err, "cannot open the access log")
	}
	defer a.closeAccessLog()
	a.metrics.Loaded(a.generation, a.loadedAt)
	a.disc.update(cfg)
	defer a.disc.stop()
	// A DNS pool is empty until its first lookup: listening before it
	// ends would answer 503 meanwhile, and a new process taking over a
	// port (listen_reuseport) would be ready with nothing to send to.
	if !a.disc.waitFirst(ctx) && ctx.Err() == nil {
		a.log.Warn().Str("waited", firstLookupWait.String()).Msg("first DNS lookups not done; serving without them")
	}
	if err := ctx.Err(); err != nil {
		// Stopped while waiting for the lookups: nothing was served, so
		// nothing drains (found by review: an address it could bind
		// anyway was served, then drained for shutdown_delay).
		return a.startFailed(ctx, err, "")
	}

	// Hold the reload lock until startup is done: the admin listener can
	// take a reload request the moment it is up.
	a.reloadMu.Lock()
	if err := a.startListeners(ctx, cfg); err != nil {
		a.reloadMu.Unlock()
		return a.startFailed(ctx, err, "cannot listen")
	}
	if opts.pprofAddr != "" {
		pprofSrv, bound, err := startPprof(opts.pprofAddr, &wg, a.log)
		if err != nil {
			a.log.Error().Err(err).Msg("cannot start pprof")
		} else {
			a.log.Info().Str("listen", bound).Msg("pprof listening")
			defer pprofSrv.Close()
		}
	}
	a.setWatch(ctx, cfg.WatchConfig)
	a.ready.Store(true)
	a.log.Info().Str("listen", a.front.addr).Str("admin", cfg.Admin.Listen).Str("version", version).
		Int("routes", len(cfg.Routes)).Int("pools", len(cfg.Pools)).Msg("sluice started")
	a.reloadMu.Unlock()
	if opts.serving != nil {
		opts.serving()
	}
	defer func() {
		a.reloadMu.Lock()
		a.setWatch(ctx, false)
		a.reloadMu.Unlock()
		a.watchers.Wait()
	}()

	for {
		select {
		case <-ctx.Done():
			if a.opts.override == nil {
				// A second SIGTERM or SIGINT during the graceful shutdown
				// (shutdown_delay, draining) ends the process at once: the
				// signals' default action. Not in a worker, whose
				// supervisor forwards the SIGTERM that systemd or a Ctrl-C
				// may already have sent it directly.
				signal.Reset(syscall.SIGTERM, syscall.SIGINT)
			}
			a.shutdown()
			return 0
		case <-hup:
			_ = a.reload(ctx, "sighup")
		case <-usr1:
			a.reopenLogs()
		}
	}
}

// startFailed logs why serve could not start and returns its exit status,
// unless ctx ended meanwhile: a stop that came during startup (a SIGTERM
// forwarded to a worker its supervisor was restarting) is a clean stop,
// status 0, whatever it broke on the way (the first apply's wait, a
// listen address's host lookup); nothing was served, so nothing drains.
func (a *app) startFailed(ctx context.Context, err error, msg string) int {
	if ctx.Err() != nil {
		a.log.Info().Msg("stopped before serving")
		return 0
	}
	a.log.Error().Err(err).Msg(msg)
	return a.opts.notStarted()
}

// startListeners opens the proxy and admin listeners of cfg and serves
// them; on failure nothing is left running.
func (a *app) startListeners(ctx context.Context, cfg *config.Config) error {
	ln, err := listen(ctx, cfg.Listen, cfg.ListenReusePort)
	if err != nil {
		// Placed as a reload's is (found by review: no file, line or
		// field).
		return cfg.At("listen", err)
	}
	if cfg.ListenReusePort && a.opts.override == nil {
		warnNoMigrate(a.log, migrateReqPath)
	}
	var aln net.Listener
	if cfg.Admin.Listen != "" {
		if aln, err = listen(ctx, cfg.Admin.Listen, false); err != nil {
			ln.Close()
			return cfg.At("admin.listen", err)
		}
		a.warnPublicAdmin(cfg.Admin.Listen)
	}
	a.front = a.startFront(cfg, ln)
	if aln != nil {
		a.admin = a.startAdmin(aln)
	}
	return nil
}

// startFront serves the proxy on ln, through package netconn: client
// timeouts applied by the connections, lazy deadlines, a wait for a connection's next request inside the write of
// a keep-alive answer (else a yield before reading it), one
// sendmsg for a response longer than the write buffer, and a lingering
// close after an error answer.
func (a *app) startFront(cfg *config.Config, ln net.Listener) *server {
	nl := a.wrapListener(ln)
	// The client timeouts, which the connections apply (the server
	// sets none); the idle one also bounds the wait for a client's next
	// request that netconn makes inside the write of an answer.
	proxy.ClientTimeouts(nl, cfg)
	s := startServer(a.newFrontServer(cfg), nl, a.log, "proxy")
	s.drains = true
	a.refused.add(s.srv)
	a.frontNow.Store(s)
	return s
}

// isReady answers the readiness probe: started, not stopping, and the
// proxy listener still accepting (one stopped by an error of its own
// would leave a process that looks well but takes no connection).
func (a *app) isReady() bool {
	s := a.frontNow.Load()
	return a.ready.Load() && s != nil && !s.failed.Load()
}

// wrapListener wraps ln in netconn's listener, which logs the accept
// errors it waits out.
func (a *app) wrapListener(ln net.Listener) *netconn.Listener {
	nl := netconn.NewListener(ln)
	addr := ln.Addr().String()
	nl.OnAcceptError = func(err error, retryIn time.Duration) {
		a.log.Warn().Err(err).Str("listen", addr).Str("retry_in", retryIn.String()).Msg("accept failed; retrying")
	}
	return nl
}

// warnPublicAdmin logs when the admin API is reachable beyond loopback:
// it can drain backends and reload the config.
func (a *app) warnPublicAdmin(addr string) {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		a.log.Warn().Str("admin", addr).Msg("admin listener is not on loopback: anyone who reaches it can drain backends and reload the config")
	}
}

// startAdmin serves the admin API on ln, through package netconn too: its
// error answers (a request too large) linger on close as the proxy's do.
//
// Its connections apply the admin's client timeouts themselves, as the
// proxy's do, so that the listener keeps track of them: a stop closes
// those that have sent nothing (HushSilent). fasthttp takes a connection
// that has sent nothing for idle only 5 s after it opened, so one such
// connection held every stop for up to 5 s, or shutdown_timeout (found
// by review).
func (a *app) startAdmin(ln net.Listener) *server {
	nl := a.wrapListener(ln)
	nl.ReadTimeout, nl.WriteTimeout, nl.IdleTimeout = adminReadTimeout, adminWriteTimeout, adminIdleTimeout
	return startServer(a.newAdminServer(), nl, a.log, "admin")
}

// The admin listener's client timeouts.
const (
	adminReadTimeout  = 10 * time.Second
	adminWriteTimeout = 10 * time.Second
	adminIdleTimeout  = time.Minute
)

func (a *app) newAdminServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: admin.Handler(admin.Options{
			Controller: stoppingGuard{a},
			Ready:      a.isReady,
			Reload: func(ctx context.Context) error {
				// Ended by a shutdown too: the admin server's stop waits
				// for this request, which may be resolving DNS.
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				defer context.AfterFunc(a.serveCtx, cancel)()
				return a.reload(ctx, "admin")
			},
			Config:  a.configInfo,
			Metrics: a.metrics.Handler(),
		}),
		ErrorHandler:    admin.ErrorHandler,
		ExpectHandler:   proxy.ExpectHandler(fasthttp.DefaultMaxRequestBodySize, admin.ErrorHandler),
		Logger:          proxy.Logger{Log: a.log},
		CloseOnShutdown: true, // (client timeouts: startAdmin)
	}
}

// shutdown: readiness off at once, keep serving for shutdown_delay so outer
// load balancers notice, then stop accepting and let in-flight requests
// finish within shutdown_timeout. The reload lock is held only to mark the
// app as stopping, so admin requests keep being answered meanwhile.
func (a *app) shutdown() {
	a.ready.Store(false)
	a.reloadMu.Lock()
	a.stopping = true
	cfg, front, adm := a.cfg.Load(), a.front, a.admin
	a.reloadMu.Unlock()
	a.log.Info().Str("delay", cfg.ShutdownDelay.String()).Str("timeout", cfg.ShutdownTimeout.String()).Msg("shutting down")
	if cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := front.stop(ctx); err != nil {
		a.log.Warn().Err(err).Msg("shutdown timed out with requests in flight")
	}
	if adm != nil {
		_ = adm.stop(ctx)
	}
	a.retiring.Wait()
	a.log.Info().Msg("stopped")
}

// staged is what a reload prepared before committing: listeners opened but
// not yet served, an access log opened but not yet in use.
type staged struct {
	front, admin  net.Listener
	adminOff      bool
	access        *accesslog.Logger
	accessChanged bool
}

// abort closes whatever was prepared.
func (st *staged) abort() {
	for _, ln := range []net.Listener{st.front, st.admin} {
		if ln != nil {
			ln.Close()
		}
	}
	if st.access != nil {
		_ = st.access.Close()
	}
}

// stage does every step of a reload that can fail and has effects outside
// the controller — opening new listeners (before the old ones close, so no
// connection attempt finds nothing listening) and the access log — so that
// a failure leaves the running state as it was.
func (a *app) stage(ctx context.Context, old, cfg *config.Config) (*staged, error) {
	st := &staged{}
	if cfg.Listen != old.Listen && !servesOn(ctx, a.front, cfg.Listen) {
		ln, err := listen(ctx, cfg.Listen, cfg.ListenReusePort)
		if err != nil {
			return nil, cfg.At("listen", err)
		}
		st.front = ln
	} else {
		// The listener is kept: each setting it holds that changed is
		// told of (found by review: a reuseport change hid the other).
		if cfg.ListenReusePort != old.ListenReusePort {
			a.log.Warn().Msg("listen_reuseport changes need a restart; keeping the listener as it is")
		}
		if serverSettingsChanged(old, cfg) {
			a.log.Warn().Msg("client timeouts and limits apply to new listeners only: change listen or restart to apply them")
		}
	}
	if cfg.Log != old.Log {
		// The logger is built once, at start; saying so beats a log.level
		// that /admin/config shows but that is not in force.
		a.log.Warn().Msg("log.level and log.format changes need a restart; logging goes on as it was")
	}
	if cfg.Admin.Listen != old.Admin.Listen && !servesOn(ctx, a.admin, cfg.Admin.Listen) {
		if cfg.Admin.Listen == "" {
			st.adminOff = true
		} else {
			ln, err := listen(ctx, cfg.Admin.Listen, false)
			if err != nil {
				st.abort()
				return nil, cfg.At("admin.listen", err)
			}
			st.admin = ln
		}
	}
	if cfg.AccessLog != old.AccessLog {
		st.accessChanged = true
		if cfg.AccessLog.Enabled {
			l, err := accesslog.New(cfg.AccessLog, os.Stdout, a.metrics.AccessLogDropped)
			if err != nil {
				st.abort()
				return nil, cfg.At("access_log.path", err)
			}
			st.access = l
		}
	}
	return st, nil
}

// commit serves the staged listeners, retires the replaced servers and
// swaps the access log. It cannot fail.
func (a *app) commit(st *staged, old, cfg *config.Config) {
	if st.front != nil {
		prev := a.front
		a.front = a.startFront(cfg, st.front)
		a.retire(prev, cfg.ShutdownTimeout)
		a.log.Info().Str("listen", cfg.Listen).Str("previous", old.Listen).Msg("proxy listener moved")
	}
	if st.admin != nil || st.adminOff {
		if a.admin != nil {
			a.retire(a.admin, 10*time.Second)
		}
		a.admin = nil
		if st.admin != nil {
			a.warnPublicAdmin(cfg.Admin.Listen)
			a.admin = a.startAdmin(st.admin)
			a.log.Info().Str("listen", cfg.Admin.Listen).Str("previous", old.Admin.Listen).Msg("admin listener moved")
		} else {
			a.log.Info().Str("previous", old.Admin.Listen).Msg("admin listener closed")
		}
	}
	if st.accessChanged {
		a.swapAccessLog(st.access)
	}
	if cfg.WatchConfig != old.WatchConfig {
		a.setWatch(a.serveCtx, cfg.WatchConfig)
	}
}

// retire shuts a replaced server down in the background; shutdown waits
// for it before sluice exits.
func (a *app) retire(s *server, timeout time.Duration) {
	a.retiring.Add(1)
	go func() {
		defer a.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = s.stop(ctx)
		a.refused.remove(s.srv)
	}()
}

func serverSettingsChanged(a, b *config.Config) bool {
	return a.Timeouts.ClientRead != b.Timeouts.ClientRead || a.Timeouts.ClientWrite != b.Timeouts.ClientWrite ||
		a.Timeouts.Idle != b.Timeouts.Idle || a.Limits.MaxHeaderBytes != b.Limits.MaxHeaderBytes ||
		a.Limits.MaxBodyBytes != b.Limits.MaxBodyBytes || a.Limits.MaxClientConns != b.Limits.MaxClientConns
}

// reloadTry is one reload's file content, or notFile when the path was
// no config file (config.ErrNotConfigFile), and the running config's
// content after it.
type reloadTry struct {
	data, left []byte
	notFile    bool
}

// lastTried is what the last reload read and left (zero before any).
func (a *app) lastTried() reloadTry {
	if t := a.lastTry.Load(); t != nil {
		return *t
	}
	return reloadTry{}
}

// reload re-reads the config file and applies it all or nothing: what can
// fail is staged first, then the controller applies the pools, then the
// staged parts are committed. A bad file or a failed step leaves the
// running config untouched and is remembered for /admin/config.
func (a *app) reload(ctx context.Context, trigger string) error {
	if a.opts.configPath == "" {
		// sluice demo: its config is built in (found by review: the
		// answer was "config: open : no such file or directory").
		a.log.Warn().Str("trigger", trigger).Msg("no config file to reload: sluice demo serves a config built in")
		return fmt.Errorf("%w: no config file to reload (sluice demo serves a config built in)", admin.ErrUnavailable)
	}
	// DNS pools new to the file are resolved first, without the reload
	// lock: a slow resolver must not hold the admin API or a shutdown.
	pre := a.preResolve(ctx)
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.stopping {
		return fmt.Errorf("%w: shutting down", admin.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		// A stopped file watcher's last event, a client that left, or a
		// shutdown that began: not tried, not a rejected config.
		return fmt.Errorf("%w: %w", admin.ErrUnavailable, err)
	}
	old := a.cfg.Load()
	data, err := config.ReadFile(a.opts.configPath)
	var cfg *config.Config
	switch {
	case err == nil:
		cfg, err = parseConfig(a.opts.configPath, data, a.opts.override)
		defer func() { a.lastTry.Store(&reloadTry{data: data, left: a.cfg.Load().Source}) }()
	case errors.Is(err, config.ErrNotConfigFile):
		a.lastTry.Store(&reloadTry{notFile: true, left: old.Source})
	}
	var st *staged
	if err == nil {
		st, err = a.stage(ctx, old, cfg)
	}
	if err == nil {
		seeds := a.disc.seedsFor(cfg, pre)
		applyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.ctrl.ApplySeeded(applyCtx, cfg, seeds)
		cancel()
		if err != nil {
			st.abort()
			if errors.Is(err, proxy.ErrStopped) {
				err = fmt.Errorf("%w: %w", admin.ErrUnavailable, err)
			}
		}
	}
	if err != nil {
		a.lastErr, a.lastErrTime = err.Error(), time.Now()
		a.metrics.Reload(false, a.generation, a.lastErrTime)
		a.log.Error().Str("trigger", trigger).Err(err).Msg("config reload rejected, keeping the running config")
		return err
	}
	a.commit(st, old, cfg)
	a.cfg.Store(cfg)
	a.disc.update(cfg)
	a.generation++
	a.loadedAt, a.lastErr = time.Now(), ""
	a.metrics.Reload(true, a.generation, a.loadedAt)
	a.log.Info().Str("trigger", trigger).Uint64("generation", a.generation).Int("routes", len(cfg.Routes)).
		Int("pools", len(cfg.Pools)).Msg("config reloaded")
	return nil
}

// setAccessLog opens the access log of c (at startup).
func (a *app) setAccessLog(cfg *config.Config) error {
	if !cfg.AccessLog.Enabled {
		return nil
	}
	l, err := accesslog.New(cfg.AccessLog, os.Stdout, a.metrics.AccessLogDropped)
	if err != nil {
		return cfg.At("access_log.path", err)
	}
	a.swapAccessLog(l)
	return nil
}

// swapAccessLog puts next in use (nil: off) and closes the previous one
// in the background (tracked by retiring), so that a previous output that
// stopped taking bytes cannot hold the reload; requests still finishing on
// it drop their line.
func (a *app) swapAccessLog(next *accesslog.Logger) {
	prev := a.access
	a.access = next
	a.proxy.SetAccessLog(next)
	if prev == nil {
		return
	}
	a.retiring.Add(1)
	go func() {
		defer a.retiring.Done()
		if err := prev.Close(); err != nil { // bounded: 10 s for a stuck writer
			a.log.Warn().Err(err).Msg("closing the previous access log")
		}
	}()
}

// accessLogWait bounds how long shutdown and SIGUSR1 wait for an access
// log writer that is stuck in a write.
const accessLogWait = 5 * time.Second

func (a *app) closeAccessLog() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.proxy.SetAccessLog(nil)
	if a.access != nil {
		ctx, cancel := context.WithTimeout(context.Background(), accessLogWait)
		defer cancel()
		if err := a.access.CloseContext(ctx); err != nil {
			a.log.Warn().Err(err).Msg("closing the access log")
		}
		a.access = nil
	}
}

// reopenLogs reopens the access log file (SIGUSR1, after logrotate moved it).
func (a *app) reopenLogs() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.access == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), accessLogWait)
	defer cancel()
	if err := a.access.ReopenContext(ctx); err != nil {
		a.log.Error().Err(err).Msg("access log reopen failed")
		return
	}
	a.log.Info().Msg("access log reopened")
}

// settleReload clears the last reload error once the config file reads
// as the running config again (put back after a bad edit): it no longer
// describes the file (found by review: it stayed in /admin/config).
func (a *app) settleReload() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.lastErr != "" {
		a.lastErr = ""
		a.log.Info().Msg("config file is the running config again; last reload error cleared")
	}
}

func (a *app) configInfo() admin.ConfigInfo {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return admin.ConfigInfo{Config: a.cfg.Load(), Generation: a.generation, LoadedAt: a.loadedAt, LastError: a.lastErr, LastErrorAt: a.lastErrTime}
}

func (a *app) newFrontServer(cfg *config.Config) *fasthttp.Server {
	srv := proxy.NewFrontServer(a.proxy, cfg, a.log)
	srv.ConnState = func(_ net.Conn, st fasthttp.ConnState) {
		switch st {
		case fasthttp.StateNew:
			a.metrics.ConnOpened()
		case fasthttp.StateClosed, fasthttp.StateHijacked:
			a.metrics.ConnClosed()
		}
	}
	return srv
}

func startPprof(addr string, wg *sync.WaitGroup, log zerolog.Logger) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("pprof server failed")
		}
	}()
	// The address bound, port 0's too (found by review: logged as typed).
	return srv, ln.Addr().String(), nil
}

// stoppingGuard is the admin API's view of the controller: once shutdown
// has started, runtime changes (drain, weight) are refused with 503, as
// reloads are; reading the pools still works.
type stoppingGuard struct{ a *app }

func (g stoppingGuard) stopping() bool {
	g.a.reloadMu.Lock()
	defer g.a.reloadMu.Unlock()
	return g.a.stopping
}

func (g stoppingGuard) Status(ctx context.Context) ([]proxy.PoolStatus, error) {
	return g.a.ctrl.Status(ctx)
}

func (g stoppingGuard) SetDrain(ctx context.Context, pool, addr string, drain bool) error {
	if g.stopping() {
		return fmt.Errorf("%w: shutting down", proxy.ErrStopped)
	}
	return g.a.ctrl.SetDrain(ctx, pool, addr, drain)
}

func (g stoppingGuard) SetWeight(ctx context.Context, pool, addr string, weight uint32) error {
	if g.stopping() {
		return fmt.Errorf("%w: shutting down", proxy.ErrStopped)
	}
	return g.a.ctrl.SetWeight(ctx, pool, addr, weight)
}
