package admin

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: GET /admin/config shows an empty sticky.secret as "REDACTED", as if
// one were set. README.md (Pools table, `sticky.secret`) says that without
// a secret the cookie value is an unkeyed hash, "guessable for small
// address spaces"; /admin/config (README line 1299, "running config") is
// where an operator checks what is in force, and it tells them a secret
// is set when none is. redact (admin/admin.go) replaces the value of every
// key naming a secret, whatever it holds; an empty string reveals nothing
// and should be shown as it is ("" in JSON, "" in YAML).
func TestAdminConfigEmptySecretNotRedacted(t *testing.T) {
	yml := "routes: [{pool: p}]\npools:\n  p:\n    sticky: {cookie: sess}\n    backends: [{address: 127.0.0.1:9001}]\n"
	base, _ := adminWithConfig(t, yml)
	for _, format := range []string{"", "?format=yaml"} {
		code, body := call(t, "GET", base+"/admin/config"+format, "")
		if code != 200 {
			t.Fatalf("GET /admin/config%s = %d %s", format, code, body)
		}
		if strings.Contains(body, "REDACTED") {
			t.Errorf("GET /admin/config%s shows the unset sticky.secret as REDACTED:\n%s", format, body)
		}
	}
}
