package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"sluice/config"
)

// watchConfig calls reload when the config file's content changes, until
// ctx ends. It watches the file's directory, not the file: editors and
// Kubernetes ConfigMaps replace files by rename or symlink swap, which a
// watch on the file itself would lose.
//
// When a symlink is met on the way to the file (the file itself, or a
// directory such as a release link: -config /srv/app/current/sluice.yaml
// with current swapped from releases/v1 to releases/v2), the directories
// holding those links and the one holding the file they lead to are
// watched too (watchDirs), set again after every burst, since inotify
// follows a link only once, when the watch is added (found by review: a
// change through such a link was never seen).
//
// Only events that can change what path reads count: those naming the
// file itself, and those naming a "..something" entry (a ConfigMap swaps
// its "..data" symlink). When a symlink is met on the way, its target may
// be anywhere, so every event counts. The first event that
// counts starts a burst; debounce later the file is read, whatever came in
// between, so a busy neighbour (an access log flushed every 100ms) can
// delay a reload by at most debounce, never postpone it. A reload happens
// only when the bytes differ from the running config and from the last
// bytes tried, so a touch or a burst of writes costs at most one reload;
// the last bytes tried count only while the running config is still the
// one that try left (a reload from elsewhere, SIGHUP or the admin API,
// may have changed it since, and a file put back to those bytes must
// then be applied again).
// A file put back to the running config after a try that failed calls
// settled (the failed try's error no longer describes the file).
// lastTry gives what the last reload from any trigger (the watcher's
// own, SIGHUP, the admin API) tried and the running config it left: that
// is what "tried last" means above (found by review: an edit rejected on
// SIGHUP was rejected again by the watcher, two failures); nil: no
// memory, every change is tried.
// w is the watch openWatch set up on path; watchConfig closes it.
func watchConfig(ctx context.Context, w *fsnotify.Watcher, path string, debounce time.Duration, current func() []byte, lastTry func() reloadTry, reload, settled func(), log zerolog.Logger) {
	defer w.Close()
	name := filepath.Base(path)
	// The directories openWatch watched, as it found them (a link
	// swapped since is seen by the first round's rewatch).
	dirs := w.WatchList()
	_, linked, _ := watchDirs(path)
	tried := false // a reload ran since the file last read as the running config
	// The first round runs at once, as if the file had just changed: an
	// edit made after the running config was read and before the watch
	// began (a start that waits for DNS, a reload that turned watching
	// on) raised no event here, and would stay unapplied until the next
	// edit (found by review). A file that reads as the running config
	// costs one read.
	timer := time.NewTimer(debounce)
	defer timer.Stop()
	pending := true // the timer runs for a burst that has begun
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if !pending && (linked || concerns(ev.Name, name)) {
				pending = true
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn().Err(err).Msg("config watch error")
		case <-timer.C:
			pending = false
			dirs, linked = rewatch(w, dirs, linked, path, log)
			var other reloadTry
			if lastTry != nil {
				other = lastTry()
			}
			data, err := config.ReadFile(path)
			if errors.Is(err, config.ErrNotConfigFile) {
				// It will not come right by waiting: the reload says why
				// (log, /admin/config) and keeps the running config;
				// once, whoever tried it (found by review: a SIGHUP's
				// refusal was made again here).
				if !(other.notFile && bytes.Equal(current(), other.left)) {
					reload()
				}
				tried = true
				continue
			}
			if err != nil {
				continue // mid-replace; the event that ends it starts a new burst
			}
			running := current()
			tried = tried || !bytes.Equal(data, running)
			switch {
			case bytes.Equal(data, running):
				if tried {
					tried = false
					settled()
				}
			case other.data != nil && bytes.Equal(data, other.data) && bytes.Equal(running, other.left):
				// Tried last, here or elsewhere, and nothing applied
				// since: it would fail again. A file put back settles it.
			default:
				reload()
			}
		}
	}
}

// openWatch sets up the watch on path's directory for watchConfig, or
// logs why it cannot (nil). It is made before watchConfig's goroutine
// starts, so that an edit made once the reload that turned watching on
// has answered is not missed while that goroutine gets going.
func openWatch(path string, log zerolog.Logger) *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error().Err(err).Msg("config watch unavailable")
		return nil
	}
	dirs, _, _ := watchDirs(path)
	if err := w.Add(dirs[0]); err != nil {
		log.Error().Err(err).Str("dir", dirs[0]).Msg("config watch unavailable")
		w.Close()
		return nil
	}
	for _, d := range dirs[1:] {
		if err := w.Add(d); err != nil {
			log.Warn().Err(err).Str("dir", d).Msg("config watch cannot follow a symlink")
		}
	}
	return w
}

// watchDirs returns the directories whose entries decide what path reads:
// path's own first; then, for each symlink on the way (path itself or a
// directory above it), the directory holding the link; and the directory
// of the file path leads to. linked reports whether a symlink was met;
// resolved, whether path leads to a file now.
func watchDirs(path string) (dirs []string, linked, resolved bool) {
	abs := path
	if !filepath.IsAbs(path) {
		// From the working directory as the kernel has it, not $PWD
		// (filepath.Abs), which may run through a symlink: "../conf"
		// is then another directory than the one read (found by
		// review).
		cwd, err := syscall.Getwd()
		if err != nil {
			return []string{filepath.Dir(path)}, false, false
		}
		abs = filepath.Join(cwd, path)
	}
	dirs = []string{filepath.Dir(abs)}
	add := func(d string) {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for p := abs; filepath.Dir(p) != p; p = filepath.Dir(p) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			linked = true
			add(filepath.Dir(p))
		}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil && real != abs {
		linked = true
		add(filepath.Dir(real))
	}
	return dirs, linked, err == nil
}

// rewatch moves w's watches to path's watchDirs as they are now (a link
// may have been swapped), and returns them. While path leads nowhere (a
// link or its target removed, to come back) the old ones are kept too:
// where it comes back is not known yet (found by review: the watch on
// the directory it would come back in was dropped).
func rewatch(w *fsnotify.Watcher, old []string, oldLinked bool, path string, log zerolog.Logger) ([]string, bool) {
	dirs, linked, resolved := watchDirs(path)
	if !resolved {
		for _, d := range old {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
		linked = linked || oldLinked
	}
	for _, d := range old {
		if !slices.Contains(dirs, d) {
			_ = w.Remove(d) // gone with its directory, perhaps
		}
	}
	for _, d := range dirs {
		if !slices.Contains(old, d) {
			if err := w.Add(d); err != nil {
				log.Warn().Err(err).Str("dir", d).Msg("config watch cannot follow a symlink")
			}
		}
	}
	return dirs, linked
}

// concerns reports whether an event on the entry event of the watched
// directory may change what the config file named name reads, when no
// symlink leads to it.
func concerns(event, name string) bool {
	base := filepath.Base(event)
	return base == name || strings.HasPrefix(base, "..")
}
