package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"sluice/config"
)

// workerOverrides adapts a config for worker i of a -workers run of n: the
// proxy listener is shared through SO_REUSEPORT, and each worker gets its
// own admin port (the configured one plus i). They are applied to every
// load, reloads included. A config that leaves any worker without its
// port is refused by all of them, so that a reload is taken by all or by
// none (found by review: worker 0 took one that worker 1 refused, and the
// two served different pools).
func workerOverrides(i, n int) func(*config.Config) error {
	return func(c *config.Config) error {
		for j := range n {
			if j != i {
				probe := *c
				if err := adminFor(&probe, j); err != nil {
					return err
				}
			}
		}
		return adminFor(c, i)
	}
}

// adminFor sets c's admin.listen to worker i's, and its proxy listener to
// be shared, or says why worker i cannot have it.
func adminFor(c *config.Config, i int) error {
	c.ListenReusePort = true
	if c.Admin.Listen == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p+i > 65535 {
		return fmt.Errorf("admin.listen: %s leaves no port for worker %d", c.Admin.Listen, i)
	}
	c.Admin.Listen = net.JoinHostPort(host, strconv.Itoa(p+i))
	if config.SameSocket(c.Listen, c.Admin.Listen) {
		// Worker i's admin API would take the proxy's port (found
		// by review: every check passed, then a worker failed to bind).
		return fmt.Errorf("admin.listen: worker %d's admin API would listen on %s, the proxy's listen (worker i takes admin.listen's port + i)", i, c.Admin.Listen)
	}
	return nil
}

// checkWorkers applies each of n workers' overrides to a copy of cfg,
// loaded from path, and reports the first that fails, with the file and
// line of admin.listen.
func checkWorkers(path string, cfg *config.Config, n int) error {
	for i := range n {
		c := *cfg
		if err := adminFor(&c, i); err != nil {
			return overrideError(path, cfg, err)
		}
	}
	return nil
}

// overrideError places an error of workerOverrides, which only changes
// admin.listen, at that field's line in path, or listen's when
// admin.listen is left at its default (found by review: "FILE:0:").
func overrideError(path string, cfg *config.Config, err error) error {
	if line := cfg.FirstLine("admin.listen", "listen"); line > 0 {
		return fmt.Errorf("%s:%d: %w", path, line, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// startGrace: a worker that exits with an error status (not killed by a
// signal) this soon after its start failed to start — a config it
// rejects — rather than died while serving.
const startGrace = 2 * time.Second

// exitNotStarted is a worker's exit status when it failed before serving
// (its port taken, say), which may come later than startGrace: it waits
// for the first DNS lookups (up to firstLookupWait) before it listens.
const exitNotStarted = 3

// notStarted is the exit status of a serve that failed before serving:
// 1, as documented, or exitNotStarted in a worker, for its supervisor.
func (o options) notStarted() int {
	if o.override != nil {
		return exitNotStarted
	}
	return 1
}

// stopMargin is what the supervisor grants its workers beyond
// shutdown_delay + shutdown_timeout to stop: the admin listener, servers
// retired by reloads, the access log's last flush.
const stopMargin = 10 * time.Second

// stopBound is how long the workers of c may take to stop gracefully.
func stopBound(c *config.Config) time.Duration {
	return c.ShutdownDelay + c.ShutdownTimeout + stopMargin
}

// supervise runs n worker processes — this binary with -worker-index i and
// GOMAXPROCS=1 — like nginx's master: one Go scheduler per core scales
// better than one scheduler over many cores (bench/results/scaling-*). It
// forwards SIGHUP and SIGUSR1 to every worker, restarts a worker that dies
// on its own, and on ctx's end sends SIGTERM to all and waits for them; a
// SIGTERM or SIGINT meanwhile kills them. A worker that fails at its first
// start, or all workers failing right after their starts, end it with 1:
// restarting them would serve nothing.
func supervise(ctx context.Context, configPath string, n int, stderr io.Writer) int {
	cfg, err := config.Load(configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := checkWorkers(configPath, cfg, n); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	if cfg.ListenReusePort {
		// The workers' listeners share one port by override, which keeps
		// them from saying it (found by review): said once, here.
		warnNoMigrate(log, migrateReqPath)
	}
	exe, err := os.Executable()
	if err != nil {
		log.Error().Err(err).Msg("cannot find the sluice binary for the workers")
		return 1
	}
	// One channel per signal: a shared one with room for one dropped a
	// SIGUSR1 (log reopen) behind a SIGHUP waiting there (found by
	// review); repeats of one signal may merge, as they mean the same.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	// bound is how long a stop waits for the workers before killing them:
	// the longest stopBound of the valid versions of the config file read
	// so far (at start, on SIGHUP, on SIGTERM). The workers reload the file
	// themselves, and one may have rejected a version the supervisor
	// accepts, so the bound never shrinks: it must not cut short a worker
	// that still drains under an older, longer timeout.
	bound := stopBound(cfg)
	reread := func(trigger string) {
		c, err := config.Load(configPath)
		if err != nil {
			log.Warn().Str("trigger", trigger).Err(err).Str("stop_bound", bound.String()).
				Msg("config file invalid; the supervisor keeps its stop bound")
			return
		}
		bound = max(bound, stopBound(c))
	}

	type exit struct {
		i   int
		err error
		ran time.Duration // from the worker's start to its exit
	}
	exits := make(chan exit, n)
	// mu guards procs and alive, which the wait goroutines update (an
	// exec.Cmd's ProcessState is written by Wait, so it is not read here),
	// and each worker's ready and pending.
	var mu sync.Mutex
	procs := make([]*worker, n)
	alive := make([]bool, n)
	starts := make([]int, n) // workers started in each slot
	var waits sync.WaitGroup
	start := func(i int) error {
		// Workers run the supervisor's own image, as nginx forks its
		// workers: the binary at exe may since have been removed or
		// replaced by a package upgrade, and a worker restarted from it
		// would fail or speak another version (found by review).
		cmd := exec.Command("/proc/self/exe", "-config", configPath, "-workers", strconv.Itoa(n), "-worker-index", strconv.Itoa(i))
		cmd.Args[0] = exe
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1", readyFDEnv+"=3")
		// The worker writes a byte on this pipe once it catches SIGHUP,
		// SIGUSR1 and SIGTERM itself (serve): until then their default
		// action would kill it, so signals for it wait (signalAll).
		readyR, readyW, err := os.Pipe()
		if err != nil {
			return err
		}
		cmd.ExtraFiles = []*os.File{readyW}
		cmd.Stdout, cmd.Stderr = os.Stdout, stderr
		// A supervisor killed outright (SIGKILL, OOM) takes its workers
		// with it, gracefully, instead of leaving them on the port.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		starts[i]++
		err = cmd.Start()
		readyW.Close()
		if err != nil {
			readyR.Close()
			return err
		}
		started := time.Now()
		w := &worker{cmd: cmd}
		mu.Lock()
		procs[i], alive[i] = w, true
		mu.Unlock()
		waits.Add(2)
		go func() {
			// Ends with the byte, or at the worker's exit (EOF).
			defer waits.Done()
			defer readyR.Close()
			var b [1]byte
			if n, _ := readyR.Read(b[:]); n == 0 {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			w.ready = true
			for _, sig := range w.pending {
				_ = cmd.Process.Signal(sig)
			}
			w.pending = nil
		}()
		go func() {
			defer waits.Done()
			err := cmd.Wait()
			mu.Lock()
			alive[i] = false
			mu.Unlock()
			exits <- exit{i, err, time.Since(started)}
		}()
		log.Info().Int("worker", i).Int("pid", cmd.Process.Pid).Msg("worker started")
		return nil
	}
	signalAll := func(sig os.Signal) {
		mu.Lock()
		defer mu.Unlock()
		for i, w := range procs {
			switch {
			case !alive[i]:
			case w.ready || sig == syscall.SIGKILL:
				_ = w.cmd.Process.Signal(sig)
			default:
				// A worker not yet catching signals gets it once it does.
				w.pending = append(w.pending, sig)
			}
		}
	}
	// stopAll sends SIGTERM to the running workers and waits for them
	// within bound, then kills what is left; a SIGTERM or SIGINT on term
	// kills them at once, as it ends a single sluice process. It returns
	// the exit code.
	stopAll := func(running int, term <-chan os.Signal) int {
		signalAll(syscall.SIGTERM)
		code := 0
		timer := time.NewTimer(bound)
		defer timer.Stop()
		kill := timer.C
		for running > 0 {
			select {
			case e := <-exits:
				running--
				if e.err != nil {
					log.Error().Int("worker", e.i).Err(e.err).Msg("worker exit")
					code = 1
				}
			case sig := <-term:
				log.Warn().Str("signal", sig.String()).Msg("signal while stopping; killing the workers")
				signalAll(syscall.SIGKILL)
				term, kill = nil, nil
				code = 1
			case <-kill:
				log.Error().Str("stop_bound", bound.String()).Msg("workers did not stop in time; killing them")
				signalAll(syscall.SIGKILL)
				kill = nil
				code = 1
			}
		}
		waits.Wait()
		return code
	}
	// notifyTerm starts catching SIGTERM and SIGINT for stopAll. On ctx's
	// end the first one was already taken by ctx (signal.NotifyContext).
	notifyTerm := func() (<-chan os.Signal, func()) {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		return term, func() { signal.Stop(term) }
	}
	giveUp := func(running int) int {
		term, stop := notifyTerm()
		defer stop()
		stopAll(running, term)
		return 1
	}
	for i := range n {
		if err := start(i); err != nil {
			log.Error().Err(err).Msg("cannot start a worker")
			return giveUp(i)
		}
	}
	running := n
	restart := time.NewTimer(time.Hour)
	restart.Stop()
	defer restart.Stop()
	// failing[i]: the last worker of slot i exited with an error within
	// startGrace of its start, or could not be started.
	failing := make([]bool, n)
	allFailing := func() bool {
		if running > 0 {
			return false
		}
		for _, f := range failing {
			if !f {
				return false
			}
		}
		return true
	}
	// dead are the workers waiting for their restart (see restartQueue).
	var dead restartQueue
	arm := func() {
		if next, ok := dead.next(); ok {
			restart.Reset(max(time.Until(next), 0))
		}
	}
	for {
		select {
		case sig := <-hup:
			reread("sighup")
			signalAll(sig)
		case sig := <-usr1:
			signalAll(sig)
		case e := <-exits:
			running--
			// An exit status of its own, not a signal from outside.
			var ee *exec.ExitError
			failing[e.i] = errors.As(e.err, &ee) && (ee.ExitCode() == exitNotStarted || ee.ExitCode() > 0 && e.ran < startGrace)
			if failing[e.i] && starts[e.i] == 1 {
				// As a single sluice process exits 1 when it cannot
				// start, the worker's own error just above.
				log.Error().Int("worker", e.i).AnErr("exit", e.err).Msg("worker failed at startup; stopping")
				return giveUp(running)
			}
			if allFailing() {
				log.Error().Int("worker", e.i).AnErr("exit", e.err).Msg("every worker failed right after its start; stopping")
				return giveUp(running)
			}
			log.Error().Int("worker", e.i).AnErr("exit", e.err).Msg("worker stopped unexpectedly; restarting it in 1s")
			dead.add(e.i, time.Now().Add(time.Second))
			arm()
		case <-restart.C:
			now := time.Now()
			for _, i := range dead.take(now) {
				if err := start(i); err != nil {
					log.Error().Err(err).Int("worker", i).Msg("cannot restart a worker; trying again in 1s")
					failing[i] = true
					dead.add(i, now.Add(time.Second))
					continue
				}
				running++
			}
			if allFailing() {
				log.Error().Msg("no worker could be restarted; stopping")
				return giveUp(running)
			}
			arm()
		case <-ctx.Done():
			term, stop := notifyTerm()
			defer stop()
			reread("stop")
			log.Info().Int("workers", running).Str("stop_bound", bound.String()).Msg("stopping workers")
			return stopAll(running, term)
		}
	}
}

// worker is one started worker process: ready once it catches signals
// itself, with the signals sent to it before that (pending).
type worker struct {
	cmd     *exec.Cmd
	ready   bool
	pending []os.Signal
}

// readyFDEnv names, in a worker's environment, the descriptor of the pipe
// on which it says it catches signals (workerReady).
const readyFDEnv = "SLUICE_WORKER_READY_FD"

// workerReady returns what a worker calls once it catches SIGHUP, SIGUSR1
// and SIGTERM itself: a byte on the supervisor's pipe. Nil outside a
// worker started by a supervisor.
func workerReady() func() {
	if os.Getenv(readyFDEnv) != "3" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	return func() {
		if f := os.NewFile(3, "ready"); f != nil {
			_, _ = f.Write([]byte{1})
			_ = f.Close()
		}
	}
}

// pinWorker binds every thread of this worker process to one CPU: the
// i-th of the CPUs the process may use (a taskset or cgroup cpuset is
// respected). Threads the runtime starts later inherit it from the thread
// that starts them. With more workers than CPUs they wrap around, as
// nginx's worker_cpu_affinity auto does (found by review: the workers
// past the CPU count were left unpinned, floating over CPUs the others
// were pinned to).
func pinWorker(i int) error {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return err
	}
	var cpus []int
	for c := range 1024 {
		if allowed.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil
	}
	var one unix.CPUSet
	one.Set(cpus[i%len(cpus)])
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &one); err != nil {
			return err
		}
	}
	return nil
}

// restartQueue holds the workers waiting for their restart, each due at
// its own time (a second after it died, or after its restart failed); the
// supervisor's one timer is set for the earliest. A timer reset to a
// second at every death put off the restarts of the workers that died
// before (found by review: a second death 0.9 s after the first kept the
// first down for 1.9 s).
type restartQueue []pendingRestart

type pendingRestart struct {
	worker int
	at     time.Time
}

// add queues worker's restart at at.
func (q *restartQueue) add(worker int, at time.Time) {
	*q = append(*q, pendingRestart{worker, at})
}

// next is when the earliest restart is due; false when none waits.
func (q restartQueue) next() (time.Time, bool) {
	if len(q) == 0 {
		return time.Time{}, false
	}
	at := q[0].at
	for _, p := range q[1:] {
		if p.at.Before(at) {
			at = p.at
		}
	}
	return at, true
}

// take removes and returns the workers due by now, in the order they died.
func (q *restartQueue) take(now time.Time) []int {
	var due []int
	kept := (*q)[:0]
	for _, p := range *q {
		if p.at.After(now) {
			kept = append(kept, p)
		} else {
			due = append(due, p.worker)
		}
	}
	clear((*q)[len(kept):])
	*q = kept
	return due
}
