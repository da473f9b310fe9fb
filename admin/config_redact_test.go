package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

// Found by review. What was wrong: README, Runtime admin API: "GET /admin/config | running config
// (JSON ...)". serveConfig's redact (admin/admin.go, redact) blanks every
// map value whose KEY contains "password", "secret" or "token" or ends in
// "key" -- and pool names are map keys under "pools". A pool named
// "turkey", "api-key", "auth-token" or "secrets" is shown as the string
// "REDACTED" instead of its settings (algorithm, backends...), so the
// operator cannot see what is running for that pool. Expected: only the
// secret settings themselves (sticky.secret) are blanked; user-chosen
// names (pool names) are never taken for setting names.
func TestAdminConfigShowsPoolNamedLikeSecret(t *testing.T) {
	yml := "routes: [{pool: turkey, match: {path_prefix: /a}}, {pool: auth-token}]\n" +
		"pools:\n" +
		"  turkey:\n    algorithm: round_robin\n    backends: [{address: 127.0.0.1:9001}]\n" +
		"  auth-token:\n    algorithm: round_robin\n    backends: [{address: 127.0.0.1:9002}]\n"
	base, _ := adminWithConfig(t, yml)
	for _, format := range []string{"", "?format=yaml"} {
		code, body := call(t, "GET", base+"/admin/config"+format, "")
		if code != 200 {
			t.Fatalf("GET /admin/config%s = %d %s", format, code, body)
		}
		if format != "" {
			if strings.Contains(body, "REDACTED") {
				t.Errorf("GET /admin/config%s redacts a pool by its name:\n%s", format, body)
			}
			continue
		}
		var got struct {
			Config struct {
				Pools map[string]json.RawMessage `json:"pools"`
			} `json:"config"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("GET /admin/config: %v\n%s", err, body)
		}
		for _, name := range []string{"turkey", "auth-token"} {
			var pool map[string]any
			if err := json.Unmarshal(got.Config.Pools[name], &pool); err != nil || pool["algorithm"] != "round_robin" {
				t.Errorf("GET /admin/config: pools[%q] = %s, want its settings (algorithm round_robin)", name, got.Config.Pools[name])
			}
		}
	}
}

// TestAdminConfigRedactsStickySecret: the sticky cookie's secret is never
// shown, in JSON or YAML.
func TestAdminConfigRedactsStickySecret(t *testing.T) {
	yml := "routes: [{pool: p}]\npools:\n  p:\n    sticky: {secret: hunter2-hunter2}\n    backends: [{address: 127.0.0.1:9001}]\n"
	base, _ := adminWithConfig(t, yml)
	for _, format := range []string{"", "?format=yaml"} {
		code, body := call(t, "GET", base+"/admin/config"+format, "")
		if code != 200 || strings.Contains(body, "hunter2") || !strings.Contains(body, "REDACTED") {
			t.Errorf("GET /admin/config%s = %d, want the secret REDACTED:\n%s", format, code, body)
		}
	}
}
