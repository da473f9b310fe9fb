package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Found by review. What was wrong: README (Hot reload) says that when a symlink leads to the config
// file "the directories holding those links and the one holding the file
// are watched too, and set again after every change, so an edit or a swap
// there is seen". rewatch (watch.go) resets the watches to watchDirs(path)
// as it is at the moment the debounce fires. If the link's far end is
// missing then (the target file removed and written again later; a
// release link removed and made again later: `rm current; ... ln -s
// releases/v2 current`), filepath.EvalSymlinks fails (and Lstat of a
// removed link fails), so watchDirs leaves out the directory where the
// new file or link will appear, and rewatch REMOVES its watch. The
// creation that follows happens in a directory no longer watched: no
// event, no reload, ever (until SIGHUP). With a plain file in the watched
// directory the same delete-then-create is seen. Expected: the new
// content reloaded within the debounce. Actual: no reload. Fix: in
// rewatch, do not drop a watched directory while the path does not
// resolve (keep the union of old and new until EvalSymlinks succeeds), or
// watch the deepest existing directory the dangling link names.
func TestWatchSymlinkTargetMissingAtDebounce(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, root string) (path string)
		remove func(t *testing.T, root string)
		create func(t *testing.T, root string)
	}{
		{
			name:  "file link elsewhere, target removed then written",
			setup: fileLink,
			remove: func(t *testing.T, root string) {
				if err := os.Remove(filepath.Join(root, "opt", "sluice.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			create: func(t *testing.T, root string) {
				writeFile(t, filepath.Join(root, "opt", "sluice.yaml"), "generation: 2\n")
			},
		},
		{
			name:  "release link removed then made again",
			setup: releaseLink,
			remove: func(t *testing.T, root string) {
				if err := os.Remove(filepath.Join(root, "current")); err != nil {
					t.Fatal(err)
				}
			},
			create: func(t *testing.T, root string) {
				symlink(t, filepath.Join("releases", "v2"), filepath.Join(root, "current"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := tt.setup(t, root)
			w := watch(t, path, path, "generation: 1\n")
			tt.remove(t, root)
			// The removal starts a burst; let its debounce fire (and
			// rewatch run) while the path does not resolve.
			time.Sleep(5 * testDebounce)
			tt.create(t, root)
			if b, err := os.ReadFile(path); err != nil || string(b) != "generation: 2\n" {
				t.Fatalf("test setup: %s reads %q, %v; want generation 2", path, b, err)
			}
			w.waitReloads(1, 2*time.Second)
		})
	}
}

// TestWatchRelativePathFromSymlinkedCwd: a relative -config path is
// watched where the kernel reads it, also when the working directory was
// entered through a symlink, so that $PWD differs from the physical path.
// (Found by review: the first version of the symlink-following watch made
// the path absolute with filepath.Abs, from $PWD, and watched another
// directory than the one read: "config watch unavailable".)
func TestWatchRelativePathFromSymlinkedCwd(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "a", "conf"), 0o700); err != nil {
		t.Fatal(err)
	}
	// root/cur -> a/b: the working directory, entered through the link.
	symlink(t, filepath.Join("a", "b"), filepath.Join(root, "cur"))
	file := filepath.Join(root, "a", "conf", "sluice.yaml")
	writeFile(t, file, "generation: 1\n")
	t.Chdir(filepath.Join(root, "cur")) // sets PWD to the logical path, as a shell does
	path := filepath.Join("..", "conf", "sluice.yaml")
	if b, err := os.ReadFile(path); err != nil || string(b) != "generation: 1\n" {
		t.Fatalf("test setup: %s reads %q, %v", path, b, err)
	}
	if fw := openWatch(path, zerolog.Nop()); fw == nil {
		t.Fatalf("openWatch(%q) from %s (PWD %s) failed: the config it reads is %s, whose directory exists",
			path, real, os.Getenv("PWD"), file)
	} else {
		fw.Close()
	}
	w := watch(t, path, path, "generation: 1\n")
	writeFile(t, file, "generation: 2\n")
	w.waitReloads(1, 2*time.Second)
}
