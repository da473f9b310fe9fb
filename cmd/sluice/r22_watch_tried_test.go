package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

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
	var reads, reloads, settles atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	fw := openWatch(path, zerolog.Nop())
	if fw == nil {
		t.Fatal("openWatch failed")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, fw, path, testDebounce,
			func() []byte { reads.Add(1); return []byte("good") },
			func() (data, left []byte) { return []byte("bad"), []byte("good") }, // SIGHUP tried "bad"
			func() { reloads.Add(1) }, func() { settles.Add(1) }, zerolog.Nop())
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("watchConfig did not return after its context ended")
		}
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s in 5 s", what)
			}
		}
	}
	// The first round runs at once: it reads "bad", which SIGHUP tried.
	waitUntil("first round", func() bool { return reads.Load() >= 1 })
	if n := reloads.Load(); n != 0 {
		t.Fatalf("the watcher reloaded content a SIGHUP had just tried (%d reloads)", n)
	}
	// Put back to the running config: the failed try is settled.
	if err := os.WriteFile(path, []byte("good"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil("settle", func() bool { return settles.Load() >= 1 })
	// New content is tried.
	if err := os.WriteFile(path, []byte("bad again"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil("reload of new content", func() bool { return reloads.Load() >= 1 })
}
