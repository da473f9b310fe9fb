package admin

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sluice/config"
)

// Found by review. What was wrong: GET /admin/config?format=yaml puts the last reload error in a "#"
// comment line (README, Runtime admin API: "with the history as #
// comments") after replacing only "\n" in it. A carriage return is a
// line break in YAML too (YAML 1.2 §5.4, b-break), and a rejected file's
// error names its fields raw: a key spelled "pools\rx" (one "\r" escape
// in a double-quoted key) gives `sluice.yaml:1: pools\rx: unknown field`.
// The text after the "\r" then leaves the comment and is read as YAML:
// here it adds a top-level key "x" that the running config does not have
// (or makes the document unparsable). Expected: the YAML body, read by a
// YAML parser, has the same keys whatever the last error says. Fix: in
// serveConfig, replace every line break of the error (and of
// info.Config.File) — "\r" and "\n" at least — or write it with
// strconv.Quote.
func TestAdminConfigYAMLErrorStaysComment(t *testing.T) {
	good, err := config.Parse("sluice.yaml", []byte("routes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, rejected := config.Parse("sluice.yaml", []byte("\"pools\\rx\": 1\n"))
	if rejected == nil || !strings.Contains(rejected.Error(), "\r") {
		t.Fatalf("reload error = %q, want one holding a raw CR (the premise)", rejected)
	}
	base := serve(t, Handler(Options{
		Controller: &fakeController{},
		Config: func() ConfigInfo {
			return ConfigInfo{Config: good, Generation: 3, LoadedAt: time.Unix(0, 0),
				LastError: rejected.Error(), LastErrorAt: time.Unix(60, 0)}
		},
	}))
	resp, err := http.Get(base + "/admin/config?format=yaml")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc map[string]any
	if err := yaml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/admin/config?format=yaml does not parse as YAML: %v\n%q", err, body)
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if slices.Contains(keys, "x") {
		t.Errorf("/admin/config?format=yaml has top-level keys %v: the reload error's text after its CR left the # comment\n%q", keys, body)
	}
}
