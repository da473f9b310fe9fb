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

// TestAdminConfigYAMLErrorStaysComment: GET /admin/config?format=yaml puts
// the last reload error in a "#" comment (README, Runtime admin API: "with
// the history as # comments"), and a rejected file's error names its
// fields raw, so a double-quoted key can put any character there. Found
// by review, twice. What was wrong: first only "\n" was replaced, and a
// CR (a line break to YAML too, 1.2 §5.4) let the text after it leave the
// comment: here it added a top-level key "x"; then only line breaks were,
// and a control character (ESC, SOH, DEL, C1's CSI), which YAML forbids
// anywhere, comments included (§5.1), made the whole answer unparsable,
// and went raw to the terminal of whoever curled it. Each case: the
// answer parses, keeps its pools, and has no key the config has not.
func TestAdminConfigYAMLErrorStaysComment(t *testing.T) {
	good, err := config.Parse("sluice.yaml", []byte("routes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, key, raw string }{
		{"CR", `pools\rx`, "\r"},
		{"ESC", `pools\ex`, "\x1b"},
		{"SOH", `pools\x01x`, "\x01"},
		{"DEL", `pools\x7fx`, "\x7f"},
		{"CSI", `pools\u009bx`, "\u009b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, rejected := config.Parse("sluice.yaml", []byte(`"`+tt.key+`": 1`+"\n"))
			if rejected == nil || !strings.Contains(rejected.Error(), tt.raw) {
				t.Fatalf("reload error = %q, want one holding %q raw (the premise)", rejected, tt.raw)
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
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(body, &doc); err != nil {
				t.Fatalf("/admin/config?format=yaml does not parse as YAML: %v\n%q", err, body)
			}
			var keys []string
			for k := range doc {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if doc["pools"] == nil || slices.Contains(keys, "x") {
				t.Errorf("/admin/config?format=yaml has top-level keys %v (want pools, none from the error's text)\n%q", keys, body)
			}
		})
	}
}
