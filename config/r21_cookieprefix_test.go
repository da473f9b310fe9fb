package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: sticky.cookie accepts a name with a cookie prefix, __Host- or
// __Secure- (RFC 6265bis §4.1.3): browsers store such a cookie only when
// it carries Secure (and, for __Host-, Path=/ and no Domain), and sluice
// sets the affinity cookie as "NAME=ID; Path=/; HttpOnly; SameSite=Lax"
// (proxy/control.go), never Secure. Every browser drops it, each request
// gets a new cookie, and the pool has no affinity, with -check saying the
// file is valid. A user hardening cookie names behind a TLS terminator
// picks exactly these names. validate.go pool() checks only
// validToken(p.Sticky.Cookie). README (sticky.cookie) promises
// "cookie-based session affinity", and invalid values are errors.
// Expected: refused at sticky.cookie's line ("browsers keep a __Host- or
// __Secure- cookie only with Secure, which sluice does not set"); browsers
// match the prefixes case-insensitively, so refuse them in any case.
func TestStickyCookiePrefixRefused(t *testing.T) {
	for _, name := range []string{"__Host-sid", "__Secure-sid", "__host-sid"} {
		text := "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n    sticky: {cookie: " + name + "}\n"
		errs := refErrs(t, text)
		want := "sluice.yaml:5: pools.web.sticky.cookie"
		if errs == nil {
			t.Errorf("sticky.cookie %s accepted: browsers never store it without Secure, so the pool has no affinity; want an error at %s", name, want)
			continue
		}
		if !strings.Contains(errs.Error(), want) {
			t.Errorf("sticky.cookie %s: error =\n%v\nwant it at %s", name, errs, want)
		}
	}
}
