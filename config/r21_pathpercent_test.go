package config

import (
	"testing"
)

// Found by review. What was wrong: a path_prefix holding a '%' that is not a %-escape ("/100%",
// "/a%z/") is refused as if it were one. validate.go checkPathPrefix
// refuses any '%' (strings.ContainsAny(p, "%?#")), but routing matches the
// decoded path (fasthttp's ctx.Path(), proxy/handler.go), where a request
// for /100%25off reads /100%off: the prefix "/100%" matches it and is how
// such a route must be written. README (Routing): path_prefix "must be
// written decoded: one with a `%`-escape, `?`, `#`, `//` or a dot segment
// could match no request and is a config error" — a bare '%' is no escape
// and can match. Expected: accepted; refuse only '%' followed by two hex
// digits (which is what "write it decoded" is about).
func TestPathPrefixBarePercentAccepted(t *testing.T) {
	for _, p := range []string{"/100%", "/a%z/"} {
		text := "routes: [{pool: web, match: {path_prefix: '" + p + "'}}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n"
		if errs := refErrs(t, text); errs != nil {
			t.Errorf("path_prefix %q refused:\n%v\nwant it accepted (a decoded path can hold a bare %%)", p, errs)
		}
	}
}
