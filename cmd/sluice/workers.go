package main

import (
	"context"
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

// workerOverrides adapts a config for worker i of a -workers run: the proxy
// listener is shared through SO_REUSEPORT, and each worker gets its own
// admin port (the configured one plus i). They are applied to every load,
// reloads included.
func workerOverrides(i int) func(*config.Config) error {
	return func(c *config.Config) error {
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
			return fmt.Errorf("admin.listen %s: no port for worker %d", c.Admin.Listen, i)
		}
		c.Admin.Listen = net.JoinHostPort(host, strconv.Itoa(p+i))
		return nil
	}
}

// supervise runs n worker processes — this binary with -worker-index i and
// GOMAXPROCS=1 — like nginx's master: one Go scheduler per core scales
// better than one scheduler over many cores (bench/results/scaling-*). It
// forwards SIGHUP and SIGUSR1 to every worker, restarts a worker that dies
// on its own, and on ctx's end sends SIGTERM to all and waits for them.
func supervise(ctx context.Context, configPath string, n int, stderr io.Writer) int {
	cfg, err := config.Load(configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for i := range n {
		c := *cfg
		if err := workerOverrides(i)(&c); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	log := newLogger(stderr, cfg.Log)
	exe, err := os.Executable()
	if err != nil {
		log.Error().Err(err).Msg("cannot find the sluice binary for the workers")
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hup)

	type exit struct {
		i   int
		err error
	}
	exits := make(chan exit, n)
	// mu guards procs and alive, which the wait goroutines update (an
	// exec.Cmd's ProcessState is written by Wait, so it is not read here).
	var mu sync.Mutex
	procs := make([]*exec.Cmd, n)
	alive := make([]bool, n)
	var waits sync.WaitGroup
	start := func(i int) error {
		cmd := exec.Command(exe, "-config", configPath, "-workers", strconv.Itoa(n), "-worker-index", strconv.Itoa(i))
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, stderr
		// A supervisor killed outright (SIGKILL, OOM) takes its workers
		// with it, gracefully, instead of leaving them on the port.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			return err
		}
		mu.Lock()
		procs[i], alive[i] = cmd, true
		mu.Unlock()
		waits.Add(1)
		go func() {
			defer waits.Done()
			err := cmd.Wait()
			mu.Lock()
			alive[i] = false
			mu.Unlock()
			exits <- exit{i, err}
		}()
		log.Info().Int("worker", i).Int("pid", cmd.Process.Pid).Msg("worker started")
		return nil
	}
	signalAll := func(sig os.Signal) {
		mu.Lock()
		defer mu.Unlock()
		for i, p := range procs {
			if alive[i] {
				_ = p.Process.Signal(sig)
			}
		}
	}
	// stopAll sends SIGTERM to the running workers and waits for them
	// within the shutdown bound, then kills what is left; it returns the
	// exit code.
	stopAll := func(running int) int {
		signalAll(syscall.SIGTERM)
		code := 0
		bound := time.After(cfg.ShutdownDelay + cfg.ShutdownTimeout + 10*time.Second)
		for running > 0 {
			select {
			case e := <-exits:
				running--
				if e.err != nil {
					log.Error().Int("worker", e.i).Err(e.err).Msg("worker exit")
					code = 1
				}
			case <-bound:
				log.Error().Msg("workers did not stop in time; killing them")
				signalAll(syscall.SIGKILL)
				bound = nil
				code = 1
			}
		}
		waits.Wait()
		return code
	}
	for i := range n {
		if err := start(i); err != nil {
			log.Error().Err(err).Msg("cannot start a worker")
			stopAll(i)
			return 1
		}
	}
	running := n
	restart := time.NewTimer(time.Hour)
	restart.Stop()
	defer restart.Stop()
	var dead []int
	for {
		select {
		case sig := <-hup:
			signalAll(sig)
		case e := <-exits:
			running--
			log.Error().Int("worker", e.i).AnErr("exit", e.err).Msg("worker stopped unexpectedly; restarting it in 1s")
			dead = append(dead, e.i)
			restart.Reset(time.Second)
		case <-restart.C:
			for _, i := range dead {
				if err := start(i); err != nil {
					log.Error().Err(err).Int("worker", i).Msg("cannot restart a worker")
					continue
				}
				running++
			}
			dead = dead[:0]
		case <-ctx.Done():
			log.Info().Int("workers", running).Msg("stopping workers")
			return stopAll(running)
		}
	}
}

// pinWorker binds every thread of this worker process to one CPU: the
// i-th of the CPUs the process may use (a taskset or cgroup cpuset is
// respected). Threads the runtime starts later inherit it from the thread
// that starts them. With more workers than CPUs nothing is pinned.
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
	if i >= len(cpus) {
		return nil
	}
	var one unix.CPUSet
	one.Set(cpus[i])
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
