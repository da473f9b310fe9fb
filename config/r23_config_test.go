package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Found by review. What was wrong: the node limit that bounds a document's work is counted only for
// the values the decoder walks (decode.go:56, d.nodes++), not for the
// entries structure() and mapping() refuse (an unknown key, a key defined
// twice, a bad key: decode.go:169, 175, 206): those are skipped with an
// error each and never counted. README (Configuration reference): "A file whose document is
// too large to decode (over 200,000 YAML nodes, about 100,000 backends in
// flow style) is refused with that one error, not with an error for every
// item it did not decode." A document of 210,000 refused entries (420,000
// YAML nodes, 1.5 MB) is not refused as too large: it gets one error per
// entry, 210,000 of them; a 4 MiB file (within MaxFileBytes) of unknown
// top-level keys (k0: 1, k1: 1, ...) gave 391,393 errors, an 89 MB error text and about 1 GB allocated in
// 2.2 s, and on a reload that text is kept as last_reload_error (served
// by every GET /admin/config) and logged as one line. Expected: "document
// too large", and not an error for every entry.
func TestNodeLimitCountsRefusedEntries(t *testing.T) {
	var b strings.Builder
	b.WriteString(refBase + "timeouts:\n")
	const entries = 210_000
	for range entries {
		b.WriteString("  a: 1\n") // unknown, then defined twice
	}
	errs := refErrs(t, b.String())
	tooLarge := false
	for _, e := range errs {
		if strings.Contains(e.Msg, "document too large") {
			tooLarge = true
		}
	}
	if !tooLarge || len(errs) >= entries {
		t.Errorf("a document of %d refused entries (over maxNodes=%d): %d errors, document too large: %v; want it refused as too large, not one error per entry",
			entries, maxNodes, len(errs), tooLarge)
	}
}

// Found by review. What was wrong: outlier_detection with only base_ejection_time raised above the
// default max_ejection_time (300s), `base_ejection_time: 10m`, is refused
// with "pools.web.outlier_detection.max_ejection_time: must be >=
// base_ejection_time" at the line of outlier_detection: the error names a
// field the file does not have, at a line that holds neither
// (validate.go:550: v.fail(op+".max_ejection_time", ...), whose Line
// falls back to the block's). config.go FirstLine: "an error about a field
// left at its default is placed at the line of the field it clashes
// with" (as admin.listen's clash is). Envoy, whose outlier detection
// sluice follows (and gRPC's xDS outlier detection), takes
// max(300s, base_ejection_time) when max_ejection_time is not set. Expected: accepted (Envoy's default), or
// the error placed at base_ejection_time's line (7).
func TestOutlierBaseAboveDefaultMax(t *testing.T) {
	text := "routes: [{pool: web}]\n" + // 1
		"pools:\n" + // 2
		"  web:\n" + // 3
		"    backends: [{address: 127.0.0.1:9001}]\n" + // 4
		"    outlier_detection:\n" + // 5
		"      consecutive_failures: 3\n" + // 6
		"      base_ejection_time: 10m\n" // 7
	c, err := Parse("t.yaml", []byte(text))
	if err != nil {
		t.Fatalf("base_ejection_time: 10m alone: %v; want it accepted (Envoy's default)", err)
	}
	if got := c.Pools["web"].OutlierDetection.MaxEjectionTime; got != 10*time.Minute {
		t.Errorf("max_ejection_time = %v, want 10m (the larger of 300s and base_ejection_time)", got)
	}
	// Written below base_ejection_time, it is the file's mistake, placed
	// at its own line.
	errs := refErrs(t, text+"      max_ejection_time: 1m\n") // 8
	if len(errs) != 1 || errs[0].Line != 8 || errs[0].Path != "pools.web.outlier_detection.max_ejection_time" {
		t.Errorf("max_ejection_time: 1m under base 10m: got\n%v\nwant one error at line 8", errs)
	}
}

// TestREADMESnippetsLoad: every ```yaml block of README.md, put
// where it belongs (a pool's block under pools.web, a pools: block with a
// route and a backend, a top-level block beside a minimal config), loads
// without error.
func TestREADMESnippetsLoad(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 8 {
		t.Fatalf("found %d yaml blocks in README.md, want at least 8", len(blocks))
	}
	const backend = "    backends: [{address: 127.0.0.1:9001}]\n"
	poolKeys := regexp.MustCompile(`^(health_check|outlier_detection|discovery|sticky|algorithm|backends):`)
	for i, m := range blocks {
		snippet := dedent(m[1])
		var text string
		switch first := strings.SplitN(snippet, "\n", 2)[0]; {
		case first == "pools:":
			// Each pool of the block gets a route and, unless it has
			// discovery, a backend.
			name := strings.TrimSuffix(strings.TrimSpace(strings.SplitN(snippet, "\n", 3)[1]), ":")
			if !strings.Contains(snippet, "discovery:") {
				snippet = strings.Replace(snippet, "  "+name+":\n", "  "+name+":\n"+backend, 1)
			}
			text = fmt.Sprintf("routes: [{pool: %s}]\n%s", name, snippet)
		case poolKeys.MatchString(first):
			text = "routes: [{pool: web}]\npools:\n  web:\n" + backend + indent(snippet, "    ")
		default:
			text = refBase + snippet
		}
		if _, err := Parse(fmt.Sprintf("README-block-%d.yaml", i+1), []byte(text)); err != nil {
			t.Errorf("README yaml block %d does not load:\n%s\n%v", i+1, text, err)
		}
	}
}

func dedent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	cut := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); cut < 0 || n < cut {
			cut = n
		}
	}
	for i, l := range lines {
		if len(l) >= cut {
			lines[i] = l[cut:]
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// Found by review. What was wrong: a value with a tag sluice does not know (`!env NAME`, `!secret
// name`, CloudFormation's `!Sub`, tags some YAML loaders expand from the
// environment or a secrets file) is taken silently as the plain string
// after the tag when the field is a string, a duration or a percentage:
// `sticky: {secret: !env STICKY_SECRET}` keys every cookie with the
// literal "STICKY_SECRET" (shown as REDACTED in /admin/config, so nothing
// tells), `access_log: {path: !env ACCESS_LOG}` writes a file named
// ACCESS_LOG in the working directory. The same tag on an integer, a bool
// or a float is refused ("want an integer, got \"3\""), so the tag is
// checked only where yaml.v3's Decode happens to refuse it (decode.go:107
// scalar() never looks at n.Tag; durations, strings and unmarshalers read
// n.Value whatever the tag).
// README (Configuration reference): "Unknown keys, wrong types and
// invalid values are errors"; nothing says tags are dropped. Expected:
// an error at the value's line naming the field (an unknown tag).
func TestUnknownTagRefused(t *testing.T) {
	for _, tc := range []struct{ text, path string }{
		{refBase + "    sticky: {secret: !env STICKY_SECRET}\n", "pools.web.sticky.secret"},
		{refBase + "access_log: {enabled: true, path: !env ACCESS_LOG}\n", "access_log.path"},
		{refBase + "timeouts: {idle: !env 3s}\n", "timeouts.idle"},
		{refBase + "    panic_threshold: !env 50\n", "pools.web.panic_threshold"},
	} {
		errs := refErrs(t, tc.text)
		found := false
		for _, e := range errs {
			found = found || e.Line == 5 && e.Path == tc.path
		}
		if !found {
			t.Errorf("%q: got %v, want an error at line 5 for %s (tag !env unknown)", tc.text[len(refBase):], errs, tc.path)
		}
	}
}
