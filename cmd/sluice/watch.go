package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// watchConfig calls reload when the config file's content changes, until
// ctx ends. It watches the file's directory, not the file: editors and
// Kubernetes ConfigMaps replace files by rename or symlink swap, which a
// watch on the file itself would lose. Events are debounced, and a reload
// happens only when the bytes differ from what was last seen, so a touch
// or a burst of writes costs at most one reload.
func watchConfig(ctx context.Context, path string, debounce time.Duration, current func() []byte, reload func(), log zerolog.Logger) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error().Err(err).Msg("config watch unavailable")
		return
	}
	defer w.Close()
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		log.Error().Err(err).Str("dir", dir).Msg("config watch unavailable")
		return
	}
	var lastTried []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn().Err(err).Msg("config watch error")
		case <-timer.C:
			data, err := os.ReadFile(path)
			if err != nil {
				continue // mid-replace; the next event retries
			}
			if !bytes.Equal(data, current()) && !bytes.Equal(data, lastTried) {
				lastTried = data
				reload()
			}
		}
	}
}
