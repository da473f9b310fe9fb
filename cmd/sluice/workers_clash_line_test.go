package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Found by review. What was wrong: README (Workers) says a config where worker i's admin port
// (admin.listen's port + i) would be the proxy's listen port "is refused
// at admin.listen's line", and the Configuration reference that every
// error names file, line and field. When admin.listen is left at its
// default (127.0.0.1:9901) and listen is 127.0.0.1:9903, `sluice -check
// -workers 4` prints "FILE:0: admin.listen: worker 2's admin API would
// listen on ...": overrideError (workers.go) formats cfg.Line("admin.listen")
// with %d, and a field not in the file has line 0, which is no line of
// the file (FieldError leaves a 0 out instead). Expected: a real line,
// listen's (line 1 here), the one of the two clashing values the file
// holds; at least never ":0:".
func TestWorkersAdminClashLine(t *testing.T) {
	path := writeConfig(t, "listen: 127.0.0.1:9903\nroutes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9001}]}}\n")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-check", "-workers", "4", "-config", path}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("sluice -check -workers 4 = exit %d (%s%s), want 1", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "admin.listen") {
		t.Fatalf("stderr = %q, want the admin.listen clash", stderr.String())
	}
	if strings.Contains(stderr.String(), path+":0:") || !strings.Contains(stderr.String(), path+":1:") {
		t.Errorf("stderr = %q, want the error at %s:1 (listen's line), not line 0", stderr.String(), path)
	}
}
