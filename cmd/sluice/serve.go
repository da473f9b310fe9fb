package main

import (
	"context"
	"errors"
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

	"sluice/admin"
	"sluice/config"
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
	front *fasthttp.Server
	admin *fasthttp.Server

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
	a := &app{opts: opts, log: newLogger(opts.stderr, cfg.Log), proxy: proxy.New()}
	a.ctrl = proxy.NewController(a.proxy, a.log)
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

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		a.log.Error().Err(err).Str("listen", cfg.Listen).Msg("cannot listen")
		return 1
	}
	a.front = newFrontServer(cfg, a.proxy.Handle, a.log)
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		adminLn, err = net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			a.log.Error().Err(err).Str("listen", cfg.Admin.Listen).Msg("cannot listen on admin address")
			return 1
		}
		a.admin = &fasthttp.Server{Handler: admin.Handler(admin.Options{
			Controller: a.ctrl,
			Ready:      a.ready.Load,
			Reload:     func(ctx context.Context) error { return a.reload(ctx, "admin") },
			Config:     a.configInfo,
		}), Logger: proxy.Logger{Log: a.log}, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, CloseOnShutdown: true}
	}
	var pprofSrv *http.Server
	if opts.pprofAddr != "" {
		pprofSrv, err = startPprof(opts.pprofAddr, &wg, a.log)
		if err != nil {
			a.log.Error().Err(err).Msg("cannot start pprof")
		}
	}

	errc := make(chan error, 2)
	wg.Add(1)
	go func() { defer wg.Done(); errc <- a.front.Serve(ln) }()
	if a.admin != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- a.admin.Serve(adminLn) }()
	}
	a.ready.Store(true)
	a.log.Info().Str("listen", ln.Addr().String()).Str("admin", cfg.Admin.Listen).Str("version", version).
		Int("routes", len(cfg.Routes)).Int("pools", len(cfg.Pools)).Msg("sluice started")
	if opts.ready != nil {
		opts.ready <- ln.Addr().String()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			a.reload(ctx, "sighup")
		case err := <-errc:
			if err != nil {
				a.log.Error().Err(err).Msg("listener failed")
				code = 1
			}
			break loop
		}
	}
	a.shutdown()
	if pprofSrv != nil {
		_ = pprofSrv.Close()
	}
	return code
}

// shutdown: readiness off, keep serving for shutdown_delay so outer load
// balancers notice, then stop accepting and let in-flight requests finish
// within shutdown_timeout.
func (a *app) shutdown() {
	cfg := a.cfg.Load()
	a.ready.Store(false)
	a.log.Info().Dur("delay", cfg.ShutdownDelay).Dur("timeout", cfg.ShutdownTimeout).Msg("shutting down")
	if cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.front.ShutdownWithContext(ctx); err != nil {
		a.log.Warn().Err(err).Msg("shutdown timed out with requests in flight")
	}
	if a.admin != nil {
		_ = a.admin.ShutdownWithContext(ctx)
	}
	a.log.Info().Msg("stopped")
}

// reload re-reads the config file; a bad file leaves the running config
// untouched and is remembered for /admin/config.
func (a *app) reload(ctx context.Context, trigger string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, err := config.Load(a.opts.configPath)
	if err == nil {
		old := a.cfg.Load()
		if cfg.Listen != old.Listen || cfg.Admin.Listen != old.Admin.Listen {
			a.log.Warn().Str("listen", cfg.Listen).Msg("listen address changes need a restart; keeping the old listeners")
		}
		applyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.ctrl.Apply(applyCtx, cfg)
		cancel()
	}
	if err != nil {
		a.lastErr, a.lastErrTime = err.Error(), time.Now()
		a.log.Error().Str("trigger", trigger).Err(err).Msg("config reload rejected, keeping the running config")
		return err
	}
	a.cfg.Store(cfg)
	a.generation++
	a.loadedAt, a.lastErr = time.Now(), ""
	a.log.Info().Str("trigger", trigger).Uint64("generation", a.generation).Int("routes", len(cfg.Routes)).
		Int("pools", len(cfg.Pools)).Msg("config reloaded")
	return nil
}

func (a *app) configInfo() admin.ConfigInfo {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return admin.ConfigInfo{Config: a.cfg.Load(), Generation: a.generation, LoadedAt: a.loadedAt, LastError: a.lastErr, LastErrorAt: a.lastErrTime}
}

func newFrontServer(cfg *config.Config, h fasthttp.RequestHandler, log zerolog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               h,
		Logger:                proxy.Logger{Log: log},
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
