package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCheckStrayArgument: sluice takes no positional arguments,
// but flag parsing stops at the first one and run never looks at
// fs.Args(). So `sluice -check FILE` (FILE without -config, as `nginx -t
// -c` users may type it) checks ./sluice.yaml instead and says "valid"
// for it, or fails on a missing sluice.yaml; `sluice -check -config a.yaml
// typo` exits 0; and `sluice FILE -check` ignores -check altogether and
// starts serving ./sluice.yaml. Expected: a usage error, exit 2, naming
// the stray argument, as for an unknown flag.
func TestCheckStrayArgument(t *testing.T) {
	valid := writeConfig(t, "routes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:9001}]}}\n")
	for _, args := range [][]string{
		{"-check", "-config", valid, "extra"},
		{"-check", valid},
	} {
		var out bytes.Buffer
		code := run(context.Background(), args, &out, &out)
		if code != 2 {
			// Found by review, fixed: expected exit 2 and a usage error; actual: the argument is
			// ignored (exit 0 for the first, a check of ./sluice.yaml for the
			// second).
			t.Errorf("run(%q) = %d, want 2 (stray argument)\n%s", args, code, out.String())
		}
	}
}

// TestCheckOutput: -check prints the verdict on stdout when
// valid (exit 0), and every error, each as file:line: path: message, then
// "FILE: configuration is invalid" on stderr when not (exit 1), with
// nothing on stdout.
func TestCheckOutput(t *testing.T) {
	valid := writeConfig(t, "routes: [{pool: p}, {pool: p, match: {path_prefix: /a/}}]\npools: {p: {backends: [{address: 127.0.0.1:9001}]}}\n")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-check", "-config", valid}, &stdout, &stderr); code != 0 {
		t.Fatalf("valid: exit %d\n%s", code, stderr.String())
	}
	if got, want := stdout.String(), valid+": configuration is valid (2 routes, 1 pool)\n"; got != want || stderr.Len() != 0 {
		t.Errorf("valid: stdout %q, stderr %q; want stdout %q", got, stderr.String(), want)
	}

	invalid := writeConfig(t, "routes: [{pool: p}]\npools:\n  p:\n    backends: [{address: 127.0.0.1:9001, wieght: 2}]\ntimeouts: {idle: 5}\n")
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"-check", "-config", invalid}, &stdout, &stderr); code != 1 {
		t.Fatalf("invalid: exit %d, want 1", code)
	}
	want := invalid + ":4: pools.p.backends[0].wieght: unknown field (known: address, weight)\n" +
		invalid + ":5: timeouts.idle: want a duration such as 2s or 150ms, got \"5\"\n" +
		invalid + ": configuration is invalid\n"
	if stdout.Len() != 0 || stderr.String() != want {
		t.Errorf("invalid: stdout %q, stderr\n%s\nwant\n%s", stdout.String(), stderr.String(), want)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"-check", "-config", t.TempDir()}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "not a config file: a directory") {
		t.Errorf("directory: exit %d, stderr %q; want 1 and not a config file", code, stderr.String())
	}
}
