package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"sluice/config"
)

// Found by review. What was wrong: GET /admin/config?format=yaml writes the last reload error into a
// "# last_reload_error:" comment after replacing only its line breaks
// (oneLine in serveConfig). A rejected file's error names its unknown key
// raw, and a double-quoted YAML key may hold any escape: "pools\ex" (ESC),
// "\x01", "\x7f", "\u009b" (CSI) give an error holding that
// character. YAML forbids such characters anywhere in a stream, comments
// included (YAML 1.2 §5.1, c-printable), so the whole answer no longer
// parses ("yaml: control characters are not allowed"), and a raw ESC or
// CSI goes to the terminal of the operator who curls the endpoint.
// Expected (README, Runtime admin API: the running config "?format=yaml
// for YAML, with the history as # comments"): a YAML document that parses,
// whatever the last error says; the same bug class as
// TestAdminConfigYAMLErrorStaysComment (CR), whose fix stopped at line
// breaks. Fix: in serveConfig write the error (and the file name) with
// strconv.QuoteToGraphic, or escape every rune that is not graphic.
func TestConfigYAMLErrorControlChars(t *testing.T) {
	good, err := config.Parse("sluice.yaml", []byte("routes: [{pool: web}]\npools: {web: {backends: [{address: 127.0.0.1:9001}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, key, raw string }{
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
				t.Errorf("/admin/config?format=yaml does not parse as YAML: %v\n%q...", err, body[:min(len(body), 300)])
			}
			if doc != nil && doc["pools"] == nil {
				t.Errorf("/admin/config?format=yaml lost its pools: %q", body)
			}
		})
	}
}
