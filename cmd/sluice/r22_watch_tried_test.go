package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// triedWatch runs watchConfig on path with "good" as the running config
// and last as the last reload's try, counting its calls.
type triedWatch struct {
	reads, reloads, settles atomic.Int32
}

func startTriedWatch(t *testing.T, path string, last reloadTry) *triedWatch {
	t.Helper()
	w := &triedWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	fw := openWatch(path, zerolog.Nop())
	if fw == nil {
		t.Fatal("openWatch failed")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, fw, path, testDebounce,
			func() []byte { w.reads.Add(1); return []byte("good") },
			func() reloadTry { return last },
			func() { w.reloads.Add(1) }, func() { w.settles.Add(1) }, zerolog.Nop())
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("watchConfig did not return after its context ended")
		}
	})
	return w
}

func waitTried(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 5 s", what)
		}
	}
}

// Found by review. What was wrong: an edit rejected on SIGHUP (or through
// the admin API) was read and rejected again by the file watcher, so one
// bad edit counted two failed reloads. The watcher now skips content the
// last reload from any trigger tried, while the running config is the one
// that try left; a file put back to the running config still settles it.
func TestWatcherSkipsContentTriedElsewhere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte("bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startTriedWatch(t, path, reloadTry{data: []byte("bad"), left: []byte("good")}) // SIGHUP tried "bad"
	// The first round runs at once: it reads "bad", which SIGHUP tried.
	waitTried(t, "first round", func() bool { return w.reads.Load() >= 1 })
	if n := w.reloads.Load(); n != 0 {
		t.Fatalf("the watcher reloaded content a SIGHUP had just tried (%d reloads)", n)
	}
	// Put back to the running config: the failed try is settled.
	if err := os.WriteFile(path, []byte("good"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitTried(t, "settle", func() bool { return w.settles.Load() >= 1 })
	// New content is tried.
	if err := os.WriteFile(path, []byte("bad again"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitTried(t, "reload of new content", func() bool { return w.reloads.Load() >= 1 })
}

// Found by review of the fix above: a path swapped for a FIFO (no config
// file, config.ErrNotConfigFile) and refused on SIGHUP was refused again
// by the watcher. It is refused once, whoever tried it; the watcher still
// refuses one nobody tried.
func TestWatcherSkipsNotConfigFileTriedElsewhere(t *testing.T) {
	for _, tt := range []struct {
		name        string
		last        reloadTry
		wantReloads bool
	}{
		{"refused on SIGHUP", reloadTry{notFile: true, left: []byte("good")}, false},
		{"refused, then another config applied", reloadTry{notFile: true, left: []byte("older")}, true},
		{"never tried", reloadTry{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sluice.yaml")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal("mkfifo:", err)
			}
			w := startTriedWatch(t, path, tt.last)
			if tt.wantReloads {
				waitTried(t, "reload", func() bool { return w.reloads.Load() >= 1 })
				return
			}
			waitTried(t, "first round", func() bool { return w.reads.Load() >= 1 })
			if n := w.reloads.Load(); n != 0 {
				t.Fatalf("the watcher refused again a path a SIGHUP had refused (%d reloads)", n)
			}
		})
	}
}
