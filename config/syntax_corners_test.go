package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// syntaxLineOf parses text and returns the line of its one
// "invalid YAML" error.
func syntaxLineOf(t *testing.T, text string) int {
	t.Helper()
	_, err := Parse("sluice.yaml", []byte(text))
	errs, ok := err.(Errors)
	if !ok || len(errs) != 1 || !strings.Contains(errs[0].Msg, "invalid YAML") {
		t.Fatalf("got %v, want one invalid YAML error", err)
	}
	return errs[0].Line
}

// TestSyntaxLineOutdentedPool: in examples/full.yaml, the pool key
// "  web:" (line 14) typed with one space too few is named at line 13 or
// 14. A version of syntaxErrorLine (5152e6e) said line 37, the untouched
// "  api:" of another pool 23 lines down (found by review): it assumed (config.go, its doc comment) that
// the longest start of the file that parses ends before the mistake.
// An outdented key breaks that: " web:" at indent 1 is a valid mapping on
// its own, so everything up to the next sibling at the old indent parses,
// and max(reported, k+1) then throws away yaml's (nearer) line. Why it
// matters: -check and the reload log send the user to a line they did not
// edit, in another pool, far from the one they did; the README says the
// result "is the mistake's line in every case tried".
func TestSyntaxLineOutdentedPool(t *testing.T) {
	data, err := os.ReadFile("../examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[13] != "  web:\n" {
		t.Fatalf("examples/full.yaml line 14 is %q, want the web pool's key", lines[13])
	}
	lines[13] = " web:\n"
	if got := syntaxLineOf(t, strings.Join(lines, "")); got < 13 || got > 14 {
		t.Errorf("error named line %d, want 14 (the outdented key) or 13 as before 5152e6e", got)
	}

	// The same in a small file: the mistake is on line 3.
	small := "routes: [{pool: web}]\npools:\n web:\n    backends: [{address: 127.0.0.1:9001}]\n    algorithm: p2c\n    preserve_host: true\n  api:\n    backends: [{address: 127.0.0.1:9002}]\n"
	if got := syntaxLineOf(t, small); got < 2 || got > 3 {
		t.Errorf("small file: error named line %d, want 3 (the outdented key) or 2", got)
	}
}

// TestSyntaxLineCost: reporting a syntax error in a big config takes
// well under a second. 5152e6e's search parsed the file once per
// line (up to 2000 lines / 256 KiB), from the longest start down. A
// 1985-line, 50 KB config (990 backends in block style) with a typo
// half-way took ~3 s to report its error, and a 240 KB one with an
// unclosed '[' ~20 s; before 5152e6e both took milliseconds.
//
// Why it matters: the parse runs in -check, at start, and in every reload
// (SIGHUP, POST /admin/reload, the watcher), under reloadMu: a bad edit of
// a big config holds the reload lock, the admin API's reload answer and a
// shutdown that waits for it, for seconds of CPU. The search is quadratic
// (each try parses up to the mistake again); the reported line bounds
// where it can start, or a binary search would do.
func TestSyntaxLineCost(t *testing.T) {
	var b strings.Builder
	b.WriteString("routes: [{pool: web}]\npools:\n  web:\n    backends:\n")
	const n = 990
	for i := range n {
		fmt.Fprintf(&b, "      - address: 10.0.%d.%d:8080\n        weight: 1\n", i/250, i%250)
		if i == n/2 {
			b.WriteString("      - address: 10.0.0.1:8080 weight: 2\n") // the typo: line 997
		}
	}
	start := time.Now()
	line := syntaxLineOf(t, b.String())
	took := time.Since(start)
	if line != 997 {
		t.Errorf("error named line %d, want 997", line)
	}
	if took > time.Second {
		t.Errorf("reporting one syntax error in a %d-line, %d-byte file took %v, want well under a second", strings.Count(b.String(), "\n"), b.Len(), took)
	}
}

// TestSyntaxLineFlow: a flow mapping written over several lines
// (the style README and the examples use) with a comma missing at the end
// of line 2: the mistake shows on line 3. yaml.v3 names a parser error's
// line counted from 0 when the construct began on the first line, and no
// start of the file parses (the '{' is open): 5152e6e kept yaml's 2;
// adding the 1 yaml.v3 leaves out of parser errors gives 3.
func TestSyntaxLineFlow(t *testing.T) {
	text := "admin: {\n  listen: 127.0.0.1:9901\n  foo: 1\n}\nroutes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\n"
	if got := syntaxLineOf(t, text); got != 3 {
		t.Errorf("error named line %d, want 3", got)
	}
}

// TestAdminOtherLoopbackAddress: admin.listen on another loopback
// address at listen's port is valid (two sockets). dacbd35 made SameSocket treat
// every loopback address as one, so listen 127.0.0.1:P with admin.listen
// [::1]:P or 127.0.0.2:P is now refused ("takes the port of listen").
// These configs were valid before and bind: they are different sockets
// (checked here on real loopback sockets). The commit meant to catch
// localhost:P beside 127.0.0.1:P (Go binds localhost to 127.0.0.1); two
// literal addresses that differ are not that. A running sluice with such
// a config would have refused every reload after the upgrade.
func TestAdminOtherLoopbackAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, other := range []string{"[::1]", "127.0.0.2"} {
		t.Run(other, func(t *testing.T) {
			addr := other + ":" + port
			ln2, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("cannot bind %s here: %v", addr, err)
			}
			ln2.Close()
			reviewWant(t, reviewBase+fmt.Sprintf("listen: 127.0.0.1:%s\nadmin: {listen: %q}\n", port, addr), "")
		})
	}
}
