package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: `sluice demo` reads its flags as `sluice` did before review fixed
// it (TestCheckStrayArgument): flag parsing stops at the first argument,
// and runDemo never looks at fs.Args(). So `sluice demo 127.0.0.1:9090
// -admin 127.0.0.1:9091` (the address typed without -listen) ignores
// both the argument and the -admin after it and serves the demo on the
// default 127.0.0.1:8080 and 127.0.0.1:9901, saying nothing. Also
// `sluice demo -h` exits 2 where `sluice -h` exits 0. Expected: a stray
// argument is a usage error, exit 2, naming it, without serving; -h
// exits 0. demo.go:runDemo (fs.Parse's error, fs.NArg() unchecked).
func TestDemoStrayArgument(t *testing.T) {
	listen, admin := freePort(t), freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	out := &syncBuffer{}
	code := run(ctx, []string{"demo", "-listen", listen, "-admin", admin, "stray"}, out, out)
	if code != 2 || strings.Contains(out.String(), "proxy on http://") {
		t.Errorf("sluice demo -listen A -admin B stray: exit %d, want 2 and no demo\n%s", code, out.String())
	}
	if code := run(context.Background(), []string{"demo", "-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("sluice demo -h: exit %d, want 0 (as sluice -h)", code)
	}
}
