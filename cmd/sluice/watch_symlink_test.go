package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Found by review. What was wrong: README (Top level, watch_config) says sluice reloads "when the
// config file's content changes", and Hot reload that the file's
// directory is watched so that renames and symlink swaps are seen. The
// watch is on filepath.Dir(path) as written (watch.go openWatch), so a
// change reached through a symlink outside that directory is never
// seen, with nothing logged:
//   - "release link": -config /srv/app/current/sluice.yaml, where current
//     is a symlink to releases/v1 that a deploy swaps to releases/v2
//     (Capistrano and most rsync deploys). inotify followed current once,
//     at Add, and watches releases/v1; the swap happens in /srv/app.
//   - "file link elsewhere": /etc/sluice/sluice.yaml -> /opt/conf/sluice.yaml
//     (config management, stow), edited in place or replaced by rename in
//     /opt/conf.
//
// Either way the path now reads new content and sluice keeps serving the
// old config until a SIGHUP. Expected: a reload within the debounce, as
// for the ConfigMap swap (TestWatchReplaceReloadsOnce).
func TestWatchSeesChangesThroughSymlinks(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string) (path string)
		replace func(t *testing.T, root string)
	}{
		{
			name:  "release link",
			setup: releaseLink,
			replace: func(t *testing.T, root string) {
				// ln -sfn's atomic form: a new link renamed over the old.
				symlink(t, filepath.Join("releases", "v2"), filepath.Join(root, "current.tmp"))
				if err := os.Rename(filepath.Join(root, "current.tmp"), filepath.Join(root, "current")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:  "file link elsewhere",
			setup: fileLink,
			replace: func(t *testing.T, root string) {
				tmp := filepath.Join(root, "opt", ".sluice.yaml.tmp")
				writeFile(t, tmp, "generation: 2\n")
				if err := os.Rename(tmp, filepath.Join(root, "opt", "sluice.yaml")); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := tt.setup(t, root)
			// The probe is the path itself: touching it reaches the file
			// (through the link), and watch returns after the first
			// round, which runs at once whatever the events.
			w := watch(t, path, path, "generation: 1\n")
			tt.replace(t, root)
			if b, err := os.ReadFile(path); err != nil || string(b) != "generation: 2\n" {
				t.Fatalf("test setup: %s reads %q, %v; want generation 2", path, b, err)
			}
			w.waitReloads(1, 2*time.Second)
		})
	}
}

// releaseLink makes root/current a link to root/releases/v1 (generation
// 1), beside releases/v2 (generation 2), and returns the config path
// through it.
func releaseLink(t *testing.T, root string) string {
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(root, "releases", v), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "releases", "v1", "sluice.yaml"), "generation: 1\n")
	writeFile(t, filepath.Join(root, "releases", "v2", "sluice.yaml"), "generation: 2\n")
	symlink(t, filepath.Join("releases", "v1"), filepath.Join(root, "current"))
	return filepath.Join(root, "current", "sluice.yaml")
}

// fileLink makes root/etc/sluice.yaml a link to root/opt/sluice.yaml
// (generation 1) and returns the link's path.
func fileLink(t *testing.T, root string) string {
	for _, d := range []string{"etc", "opt"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "opt", "sluice.yaml"), "generation: 1\n")
	symlink(t, filepath.Join(root, "opt", "sluice.yaml"), filepath.Join(root, "etc", "sluice.yaml"))
	return filepath.Join(root, "etc", "sluice.yaml")
}
