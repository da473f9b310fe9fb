package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFile: a config path that is not a regular file (a FIFO, whose
// open and read would wait for a writer and hold a reload; a device, whose
// read never ends; a directory), or that is over MaxFileBytes, is refused
// at once with ErrNotConfigFile and the path in the message; a regular file
// up to the limit reads whole.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(regular, []byte("listen: 127.0.0.1:8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	atLimit := filepath.Join(dir, "limit.yaml")
	if err := os.WriteFile(atLimit, bytes.Repeat([]byte("#"), MaxFileBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	over := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(over, bytes.Repeat([]byte("#"), MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
		size       int
	}{
		{regular, "", 23},
		{atLimit, "", MaxFileBytes},
		{over, "larger than 4 MiB", 0},
		{fifo, "a FIFO", 0},
		{zero, "a device", 0},
		{dir, "a directory", 0},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			start := time.Now()
			data, err := ReadFile(tt.path)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v", d)
			}
			if tt.want == "" {
				if err != nil || len(data) != tt.size {
					t.Fatalf("read %d bytes, %v; want %d", len(data), err, tt.size)
				}
				return
			}
			if !errors.Is(err, ErrNotConfigFile) || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want ErrNotConfigFile naming %s and saying %q", err, tt.path, tt.want)
			}
		})
	}
	if _, err := Load(fifo); !errors.Is(err, ErrNotConfigFile) {
		t.Errorf("Load(FIFO) = %v, want ErrNotConfigFile", err)
	}
}
