package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const testDebounce = 100 * time.Millisecond

// watched runs watchConfig on one file with a fake running config.
type watched struct {
	t       *testing.T
	path    string
	running atomic.Pointer[[]byte] // what current returns
	reads   atomic.Int32           // calls to current: the debounce fired
	reloads atomic.Int32
	last    atomic.Pointer[reloadTry] // what the last reload tried, as app.reload keeps it
}

// watch starts watchConfig on path, with running as the running config;
// reload makes the file's content the running config, as a good reload
// does. The watcher is stopped, and checked to have returned, when the test
// ends. watch returns once the watcher sees events: it touches probe,
// which changes no bytes, until the debounce fires.
func watch(t *testing.T, path, probe, running string) *watched {
	t.Helper()
	w := &watched{t: t, path: path}
	w.setRunning(running)
	ctx, cancel := context.WithCancel(context.Background())
	fw := openWatch(path, zerolog.Nop())
	if fw == nil {
		t.Fatal("openWatch failed")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, fw, path, testDebounce,
			func() []byte { w.reads.Add(1); return *w.running.Load() },
			func() reloadTry {
				if l := w.last.Load(); l != nil {
					return *l
				}
				return reloadTry{}
			},
			func() {
				w.reloads.Add(1)
				if b, err := os.ReadFile(path); err == nil {
					defer func() { w.last.Store(&reloadTry{data: b, left: *w.running.Load()}) }()
					w.setRunning(string(b))
				}
			}, func() {}, zerolog.Nop())
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("watchConfig did not return after its context ended")
		}
	})
	// The watch is set up in the goroutine: touch until the debounce fires
	// once, then let the burst end.
	deadline := time.Now().Add(5 * time.Second)
	for w.reads.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("watchConfig saw no event in 5s")
		}
		now := time.Now()
		if err := os.Chtimes(probe, now, now); err != nil {
			t.Fatal(err)
		}
		for end := now.Add(3 * testDebounce); w.reads.Load() == 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(3 * testDebounce)
	if n := w.reloads.Load(); n != 0 {
		t.Fatalf("touching the config reloaded it %d times, want 0", n)
	}
	return w
}

func (w *watched) setRunning(s string) {
	b := []byte(s)
	w.running.Store(&b)
}

// waitReloads waits up to within for n reloads in all.
func (w *watched) waitReloads(n int32, within time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for w.reloads.Load() < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("reloads = %d after %v, want %d", w.reloads.Load(), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// busyNeighbour rewrites another file of dir every 20ms until the test
// ends, as an access log in the config's directory would.
func busyNeighbour(t *testing.T, dir string) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(filepath.Join(dir, "access.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = f.WriteString("GET / 200\n")
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func TestWatchReloadsDespiteBusyNeighbour(t *testing.T) {
	tests := []struct {
		name    string
		symlink bool // the config is a symlink to real.yaml next to it
	}{
		{"file", false},
		{"symlink", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, target := filepath.Join(dir, "sluice.yaml"), filepath.Join(dir, "sluice.yaml")
			if tt.symlink {
				target = filepath.Join(dir, "real.yaml")
				symlink(t, "real.yaml", path)
			}
			writeFile(t, target, "generation: 1\n")
			w := watch(t, path, path, "generation: 1\n")
			busyNeighbour(t, dir)
			time.Sleep(3 * testDebounce)
			start := time.Now()
			writeFile(t, target, "generation: 2\n")
			w.waitReloads(1, time.Second)
			t.Logf("reloaded %v after the write", time.Since(start))
		})
	}
}

func TestWatchReplaceReloadsOnce(t *testing.T) {
	tests := []struct {
		name    string
		probe   string                         // what to touch to see the watch is up
		setup   func(t *testing.T, dir string) // writes generation 1
		replace func(t *testing.T, dir string) // makes it generation 2
	}{
		{
			name:  "rename over the file",
			probe: "sluice.yaml",
			setup: func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "sluice.yaml"), "generation: 1\n") },
			replace: func(t *testing.T, dir string) {
				tmp := filepath.Join(dir, ".sluice.yaml.swp")
				writeFile(t, tmp, "generation: 2\n")
				if err := os.Rename(tmp, filepath.Join(dir, "sluice.yaml")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			// A Kubernetes ConfigMap volume: sluice.yaml -> ..data/sluice.yaml,
			// ..data -> ..v1, and an update renames a new ..data over it.
			name:  "configmap symlink swap",
			probe: "..data", // the file itself is in ..v1, not watched
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "..v1"), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "..v1", "sluice.yaml"), "generation: 1\n")
				symlink(t, "..v1", filepath.Join(dir, "..data"))
				symlink(t, filepath.Join("..data", "sluice.yaml"), filepath.Join(dir, "sluice.yaml"))
			},
			replace: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "..v2"), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "..v2", "sluice.yaml"), "generation: 2\n")
				symlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			w := watch(t, filepath.Join(dir, "sluice.yaml"), filepath.Join(dir, tt.probe), "generation: 1\n")
			tt.replace(t, dir)
			w.waitReloads(1, time.Second)
			time.Sleep(5 * testDebounce)
			if n := w.reloads.Load(); n != 1 {
				t.Errorf("reloads = %d, want 1", n)
			}
			if got := string(*w.running.Load()); got != "generation: 2\n" {
				t.Errorf("running config = %q, want generation 2", got)
			}
		})
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, "generation: 1\n")
	w := watch(t, path, path, "generation: 1\n")
	// From here, any debounce that fires reloads: the file differs from
	// the running config.
	w.setRunning("generation: 0\n")
	reads := w.reads.Load()
	other := filepath.Join(dir, "other.yaml")
	for i := 0; i < 10; i++ {
		writeFile(t, other, "x\n")
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Rename(other, filepath.Join(dir, "renamed.yaml")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * testDebounce)
	if n, r := w.reloads.Load(), w.reads.Load()-reads; n != 0 || r != 0 {
		t.Fatalf("after changes to other files: %d reloads, %d debounces fired; want none", n, r)
	}
	// The watcher is still there: touching the config reloads it.
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	w.waitReloads(1, time.Second)
}

// TestEditRightAfterOpenWatchIsSeen: an edit made once openWatch has
// returned, before watchConfig's goroutine has run at all, is reloaded.
// The watch used to be set up inside that goroutine, so an edit right
// after the reload that turned watch_config on could come before it and
// be missed (TestWatchConfigFollowsReloads failed so under load).
func TestEditRightAfterOpenWatchIsSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	const before, after = "log: {level: info}\n", "log: {level: warn}\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	fw := openWatch(path, zerolog.Nop())
	if fw == nil {
		t.Fatal("openWatch failed")
	}
	if err := os.WriteFile(path, []byte(after), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, fw, path, testDebounce, func() []byte { return []byte(before) }, nil,
			func() {
				select {
				case reloaded <- struct{}{}:
				default:
				}
			}, func() {}, zerolog.Nop())
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-reloaded:
	case <-time.After(5 * time.Second):
		t.Fatal("the edit made before the watch loop ran was not reloaded within 5 s")
	}
}
