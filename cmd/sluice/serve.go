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
	"sluice/proxy"
)

type options struct {
	configPath string
	pprofAddr  string
	stderr     io.Writer
	// ready, when set, is closed once the listeners are up (tests).
	ready chan<- string
}

// app is one running sluice: its listeners, servers and control plane.
type app struct {
	opts  options
	log   zerolog.Logger
	proxy *proxy.Proxy
	ctrl  *proxy.Controller
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
	a := &app{opts: opts, log: newLogger(opts.stderr, cfg.Log), proxy: proxy.New(), metrics: metrics.New(version)}
	a.ctrl = proxy.NewController(a.proxy, a.log)
	a.ctrl.Metrics = a.metrics
	a.disc = &discoverers{log: a.log, ctrl: a.ctrl, onError: func(pool string, _ error) { a.metrics.DiscoveryError(pool) }}
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
		a.log.Error().Err(err).Msg("config apply failed")
		return 1
	}
	if err := a.setAccessLog(cfg.AccessLog); err != nil {
		a.log.Error().Err(err).Msg("cannot open the access log")
		return 1
	}
	defer a.closeAccessLog()
	a.metrics.Reload(true, a.generation, a.loadedAt)
	if err := a.startListeners(ctx, cfg); err != nil {
		a.log.Error().Err(err).Msg("cannot listen")
		return 1
	}
	a.disc.update(cfg)
	defer a.disc.stop()
	if opts.pprofAddr != "" {
		pprofSrv, err := startPprof(opts.pprofAddr, &wg, a.log)
		if err != nil {
			a.log.Error().Err(err).Msg("cannot start pprof")
		} else {
			defer pprofSrv.Close()
		}
	}
	a.ready.Store(true)
	a.log.Info().Str("listen", a.front.addr).Str("admin", cfg.Admin.Listen).Str("version", version).
		Int("routes", len(cfg.Routes)).Int("pools", len(cfg.Pools)).Msg("sluice started")
	if opts.ready != nil {
		opts.ready <- a.front.addr
	}
	// Reloads may move the listeners from here on: the file watcher starts
	// only after the lines above have read them.
	if opts.configPath != "" && cfg.WatchConfig {
		watchCtx, stopWatch := context.WithCancel(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchConfig(watchCtx, opts.configPath, 250*time.Millisecond,
				func() []byte { return a.cfg.Load().Source },
				func() { _ = a.reload(watchCtx, "file_change") }, a.log)
		}()
		defer stopWatch()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return 0
		case <-hup:
			_ = a.reload(ctx, "sighup")
		case <-usr1:
			a.reopenLogs()
		}
	}
}

// startListeners opens the proxy and admin listeners of cfg.
func (a *app) startListeners(ctx context.Context, cfg *config.Config) error {
	ln, err := listen(ctx, cfg.Listen, cfg.ListenReusePort)
	if err != nil {
		return err
	}
	a.front = startServer(a.newFrontServer(cfg), ln, a.log, "proxy")
	if cfg.Admin.Listen == "" {
		return nil
	}
	aln, err := listen(ctx, cfg.Admin.Listen, false)
	if err != nil {
		return err
	}
	a.warnPublicAdmin(cfg.Admin.Listen)
	a.admin = startServer(a.newAdminServer(), aln, a.log, "admin")
	return nil
}

// warnPublicAdmin logs when the admin API is reachable beyond loopback:
// it can drain backends and reload the config.
func (a *app) warnPublicAdmin(addr string) {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		a.log.Warn().Str("admin", addr).Msg("admin listener is not on loopback: anyone who reaches it can drain backends and reload the config")
	}
}

func (a *app) newAdminServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler: admin.Handler(admin.Options{
			Controller: a.ctrl,
			Ready:      a.ready.Load,
			Reload:     func(ctx context.Context) error { return a.reload(ctx, "admin") },
			Config:     a.configInfo,
			Metrics:    a.metrics.Handler(),
		}),
		Logger:          proxy.Logger{Log: a.log},
		ReadTimeout:     10 * time.Second,
		WriteTimeout:    10 * time.Second,
		IdleTimeout:     time.Minute,
		CloseOnShutdown: true,
	}
}

// shutdown: readiness off, keep serving for shutdown_delay so outer load
// balancers notice, then stop accepting and let in-flight requests finish
// within shutdown_timeout.
func (a *app) shutdown() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.stopping = true
	cfg := a.cfg.Load()
	a.ready.Store(false)
	a.log.Info().Dur("delay", cfg.ShutdownDelay).Dur("timeout", cfg.ShutdownTimeout).Msg("shutting down")
	if cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.front.stop(ctx); err != nil {
		a.log.Warn().Err(err).Msg("shutdown timed out with requests in flight")
	}
	if a.admin != nil {
		_ = a.admin.stop(ctx)
	}
	a.retiring.Wait()
	a.log.Info().Msg("stopped")
}

// moveListeners opens cfg's listeners where they changed, before closing
// the old ones, so that no connection attempt finds nothing listening.
// The old proxy server finishes its in-flight requests in the background.
func (a *app) moveListeners(ctx context.Context, old, cfg *config.Config) error {
	if cfg.Listen != old.Listen || cfg.ListenReusePort != old.ListenReusePort {
		ln, err := listen(ctx, cfg.Listen, cfg.ListenReusePort)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		prev := a.front
		a.front = startServer(a.newFrontServer(cfg), ln, a.log, "proxy")
		a.retire(prev, cfg.ShutdownTimeout)
		a.log.Info().Str("listen", cfg.Listen).Str("previous", old.Listen).Msg("proxy listener moved")
	} else if serverSettingsChanged(old, cfg) {
		a.log.Warn().Msg("client timeouts and limits apply to new listeners only: change listen or restart to apply them")
	}
	if cfg.Admin.Listen != old.Admin.Listen {
		var next *server
		if cfg.Admin.Listen != "" {
			ln, err := listen(ctx, cfg.Admin.Listen, false)
			if err != nil {
				return fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
			}
			a.warnPublicAdmin(cfg.Admin.Listen)
			next = startServer(a.newAdminServer(), ln, a.log, "admin")
		}
		if a.admin != nil {
			a.retire(a.admin, 10*time.Second)
		}
		a.admin = next
	}
	return nil
}

// retire shuts a replaced server down in the background; serve waits for
// it through the app's wait group before returning.
func (a *app) retire(s *server, timeout time.Duration) {
	a.retiring.Add(1)
	go func() {
		defer a.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = s.stop(ctx)
	}()
}

func serverSettingsChanged(a, b *config.Config) bool {
	return a.Timeouts.ClientRead != b.Timeouts.ClientRead || a.Timeouts.ClientWrite != b.Timeouts.ClientWrite ||
		a.Timeouts.Idle != b.Timeouts.Idle || a.Limits.MaxHeaderBytes != b.Limits.MaxHeaderBytes ||
		a.Limits.MaxBodyBytes != b.Limits.MaxBodyBytes
}

// reload re-reads the config file; a bad file leaves the running config
// untouched and is remembered for /admin/config.
func (a *app) reload(ctx context.Context, trigger string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.stopping {
		return errors.New("shutting down")
	}
	cfg, err := config.Load(a.opts.configPath)
	if err == nil {
		err = a.moveListeners(ctx, a.cfg.Load(), cfg)
	}
	if err == nil {
		applyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.ctrl.Apply(applyCtx, cfg)
		cancel()
	}
	if err == nil && cfg.AccessLog != a.cfg.Load().AccessLog {
		err = a.setAccessLog(cfg.AccessLog)
	}
	if err != nil {
		a.lastErr, a.lastErrTime = err.Error(), time.Now()
		a.metrics.Reload(false, a.generation, a.lastErrTime)
		a.log.Error().Str("trigger", trigger).Err(err).Msg("config reload rejected, keeping the running config")
		return err
	}
	a.cfg.Store(cfg)
	a.disc.update(cfg)
	a.generation++
	a.loadedAt, a.lastErr = time.Now(), ""
	a.metrics.Reload(true, a.generation, a.loadedAt)
	a.log.Info().Str("trigger", trigger).Uint64("generation", a.generation).Int("routes", len(cfg.Routes)).
		Int("pools", len(cfg.Pools)).Msg("config reloaded")
	return nil
}

// setAccessLog opens the access log of c and swaps it in; the previous one
// is closed after the swap (requests still finishing drop their line).
func (a *app) setAccessLog(c config.AccessLog) error {
	var next *accesslog.Logger
	if c.Enabled {
		l, err := accesslog.New(c, os.Stdout, a.metrics.AccessLogDropped)
		if err != nil {
			return fmt.Errorf("access_log: %w", err)
		}
		next = l
	}
	prev := a.access
	a.access = next
	a.proxy.SetAccessLog(next)
	if prev != nil {
		if err := prev.Close(); err != nil {
			a.log.Warn().Err(err).Msg("closing the previous access log")
		}
	}
	return nil
}

func (a *app) closeAccessLog() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.proxy.SetAccessLog(nil)
	if a.access != nil {
		_ = a.access.Close()
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
	if err := a.access.Reopen(); err != nil {
		a.log.Error().Err(err).Msg("access log reopen failed")
		return
	}
	a.log.Info().Msg("access log reopened")
}

func (a *app) configInfo() admin.ConfigInfo {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return admin.ConfigInfo{Config: a.cfg.Load(), Generation: a.generation, LoadedAt: a.loadedAt, LastError: a.lastErr, LastErrorAt: a.lastErrTime}
}

func (a *app) newFrontServer(cfg *config.Config) *fasthttp.Server {
	return &fasthttp.Server{
		Handler: a.proxy.Handle,
		Logger:  proxy.Logger{Log: a.log},
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			switch st {
			case fasthttp.StateNew:
				a.metrics.ConnOpened()
			case fasthttp.StateClosed, fasthttp.StateHijacked:
				a.metrics.ConnClosed()
			}
		},
		ErrorHandler:          proxy.ServerErrorHandler,
		Name:                  "",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           cfg.Timeouts.ClientRead,
		WriteTimeout:          cfg.Timeouts.ClientWrite,
		IdleTimeout:           cfg.Timeouts.Idle,
		ReadBufferSize:        cfg.Limits.MaxHeaderBytes,
		MaxRequestBodySize:    cfg.Limits.MaxBodyBytes,
		CloseOnShutdown:       true,
		// Cookies and multipart forms are the backend's business.
		DisablePreParseMultipartForm: true,
	}
}

func startPprof(addr string, wg *sync.WaitGroup, log zerolog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
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
	return srv, nil
}
