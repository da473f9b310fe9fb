// Command sluice is an L7 load-balancing reverse proxy. This file wires the
// packages together and owns the process: flags, signals, listeners.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"sluice/accesslog"
	"sluice/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Until serve (or the supervisor) listens for them, SIGHUP and SIGUSR1
	// are ignored: their default action ends the process, and a reload or
	// log rotation that comes while sluice starts must not kill it. (One
	// that comes before main, while Go and the packages initialise, about
	// 30 ms, still does: no Go program can catch it then.)
	// SIGPIPE too: a log written to a pipe whose reader went away (a
	// log shipper restarting) would otherwise kill the process; the write
	// fails with EPIPE instead, and the access log counts the line as
	// dropped (found by review).
	signal.Ignore(syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program behind main, with its inputs and outputs passed
// in so tests can drive it in-process. ctx ends on SIGTERM/SIGINT.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "demo" {
		return runDemo(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "sluice.yaml", "path of the YAML config file")
	check := fs.Bool("check", false, "validate the config file and exit (0 valid, 1 invalid)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (for profiling; off by default)")
	workers := fs.Int("workers", 0, "run this many worker processes (GOMAXPROCS=1 each) sharing the port; 0 runs one process")
	workerIndex := fs.Int("worker-index", -1, "internal: the index of this worker process")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sluice [-config FILE] [-check] [-version] [-pprof ADDR] [-workers N]\n       sluice demo [-listen ADDR] [-admin ADDR]\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "worker-index" { // internal: set by -workers for its children
				return
			}
			kind, usage := flag.UnquoteUsage(f)
			if kind != "" {
				kind = " " + kind
			}
			fmt.Fprintf(stderr, "  -%s%s\n    \t%s", f.Name, kind, usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		// sluice takes no arguments but flags: "sluice -check FILE"
		// checked ./sluice.yaml and said valid, and "sluice FILE -check"
		// served (found by review). Flags after an argument are not read.
		fmt.Fprintf(stderr, "unexpected argument %q (the config file goes after -config; flags come before any argument)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "sluice %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	if *workers < 0 || *workers > 1024 {
		fmt.Fprintln(stderr, "-workers must be from 0 to 1024")
		return 2
	}
	if *workers > 0 && *workerIndex < 0 && !*check {
		if *pprofAddr != "" {
			// Workers are separate processes: one address cannot serve
			// them all (found by review: it was ignored, silently).
			fmt.Fprintln(stderr, "-pprof cannot be used with -workers: profile a single process (without -workers)")
			return 2
		}
		return supervise(ctx, *configPath, *workers, stderr)
	}
	var override func(*config.Config) error
	var ready func()
	if *workerIndex >= 0 {
		ready = workerReady()
		override = workerOverrides(*workerIndex, *workers)
		if err := pinWorker(*workerIndex); err != nil {
			fmt.Fprintln(stderr, "worker: cannot pin to a CPU:", err)
		}
	}
	cfg, err := loadConfig(*configPath, override)
	if err == nil && *check && *workers > 0 {
		err = checkWorkers(*configPath, cfg, *workers)
	}
	if err == nil && *check {
		err = checkAccessLog(cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		if *check {
			fmt.Fprintf(stderr, "%s: configuration is invalid\n", *configPath)
		}
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration is valid (%s, %s)\n", *configPath, count(len(cfg.Routes), "route"), count(len(cfg.Pools), "pool"))
		return 0
	}
	return serve(ctx, cfg, options{configPath: *configPath, pprofAddr: *pprofAddr, stderr: stderr, override: override, ready: ready, worker: *workerIndex})
}

// checkAccessLog is accesslog.Check, its error placed at
// access_log.path's line in cfg's file.
func checkAccessLog(cfg *config.Config) error {
	if err := accesslog.Check(cfg.AccessLog); err != nil {
		return cfg.At("access_log.path", err)
	}
	return nil
}

// loadConfig loads the file and applies override (a worker's changes).
func loadConfig(path string, override func(*config.Config) error) (*config.Config, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseConfig(path, data, override)
}

// parseConfig is loadConfig for the bytes data read from path.
func parseConfig(path string, data []byte, override func(*config.Config) error) (*config.Config, error) {
	cfg, err := config.Parse(path, data)
	if err != nil || override == nil {
		return cfg, err
	}
	if err := override(cfg); err != nil {
		return nil, overrideError(path, cfg, err)
	}
	return cfg, nil
}

// count is "1 route", "2 routes".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
