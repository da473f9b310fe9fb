package config

import (
	"errors"
	"strings"
	"testing"
)

// r25OpsBase is a valid config; each case replaces one marked line
// or appends to it. The line that carries "# HERE" is the line the error
// must name.
const r25OpsBase = `listen: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:9901
routes:
  - match: { host: api.example.com, path_prefix: /v1/ }
    pool: api
  - match: { path_prefix: / }
    pool: web
pools:
  web:
    algorithm: round_robin
    backends:
      - { address: 127.0.0.1:9001, weight: 1 }
      - { address: 127.0.0.1:9002 }
  api:
    backends:
      - { address: 127.0.0.1:9101 }
`

// r25OpsHereLine is the 1-based line holding "# HERE", 0 if none.
func r25OpsHereLine(text string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "# HERE") {
			return i + 1
		}
	}
	return 0
}

func TestOpsConfigErrorsNameFileLineField(t *testing.T) {
	tests := []struct {
		name string
		give string // appended to r25OpsBase unless it starts with "!full\n"
		path string
		msg  string
	}{
		{"listen list", "!full\n" + strings.Replace(r25OpsBase, "listen: 127.0.0.1:8080", "listen: [a, b] # HERE", 1), "listen", "want a string"},
		{"listen no port", "!full\n" + strings.Replace(r25OpsBase, "listen: 127.0.0.1:8080", "listen: 127.0.0.1 # HERE", 1), "listen", "host:port"},
		{"listen port 0", "!full\n" + strings.Replace(r25OpsBase, "listen: 127.0.0.1:8080", "listen: 127.0.0.1:0 # HERE", 1), "listen", "port"},
		{"listen port big", "!full\n" + strings.Replace(r25OpsBase, "listen: 127.0.0.1:8080", "listen: 127.0.0.1:65536 # HERE", 1), "listen", "port"},
		{"admin same port", "!full\n" + strings.Replace(r25OpsBase, "  listen: 127.0.0.1:9901", "  listen: 127.0.0.1:8080 # HERE", 1), "admin.listen", "must differ"},
		{"unknown top key", "listne: x # HERE\n", "listne", "unknown field"},
		{"unknown nested flow key", "timeouts: {conect: 2s} # HERE\n", "timeouts.conect", "unknown field"},
		{"duration without unit", "timeouts:\n  connect: 5 # HERE\n", "timeouts.connect", "duration"},
		{"duration with space", "timeouts:\n  connect: 2 s # HERE\n", "timeouts.connect", "duration"},
		{"duration zero", "timeouts:\n  response: 0s # HERE\n", "timeouts.response", "> 0"},
		{"duration negative", "timeouts:\n  idle: -1s # HERE\n", "timeouts.idle", "> 0"},
		{"duration mapping", "timeouts:\n  idle: {s: 1} # HERE\n", "timeouts.idle", "duration"},
		{"duration overflow", "drain_timeout: 99999999999h # HERE\n", "drain_timeout", "duration"},
		{"shutdown_delay negative", "shutdown_delay: -1s # HERE\n", "shutdown_delay", ">= 0"},
		{"header bytes small", "limits:\n  max_header_bytes: 512 # HERE\n", "limits.max_header_bytes", "1024"},
		{"body bytes fraction", "limits:\n  max_body_bytes: 1.5 # HERE\n", "limits.max_body_bytes", "integer"},
		{"body bytes size unit", "limits:\n  max_body_bytes: 8MiB # HERE\n", "limits.max_body_bytes", "integer"},
		{"body bytes huge", "limits:\n  max_body_bytes: 99999999999999999999 # HERE\n", "limits.max_body_bytes", "integer"},
		{"body bytes zero", "limits:\n  max_body_bytes: 0 # HERE\n", "limits.max_body_bytes", "> 0"},
		{"client conns zero", "limits:\n  max_client_conns: 0 # HERE\n", "limits.max_client_conns", "from 1"},
		{"conns per backend big", "limits:\n  max_conns_per_backend: 65536 # HERE\n", "limits.max_conns_per_backend", "65535"},
		{"attempts 11", "retries: {attempts: 11} # HERE\n", "retries.attempts", "from 1 to 10"},
		{"attempts string", "retries:\n  attempts: two # HERE\n", "retries.attempts", "integer"},
		{"attempts octal", "retries:\n  attempts: 010 # HERE\n", "retries.attempts", "octal"},
		{"preserve_host int", "preserve_host: 2 # HERE\n", "preserve_host", "true or false"},
		{"xff bad", "forwarding:\n  x_forwarded_for: keep # HERE\n", "forwarding.x_forwarded_for", "append"},
		{"log level", "log: {level: verbose} # HERE\n", "log.level", "debug"},
		{"log format", "log:\n  format: xml # HERE\n", "log.format", "json"},
		{"sample big", "access_log:\n  sample: 1.5 # HERE\n", "access_log.sample", "0 to 1"},
		{"sample percent", "access_log:\n  sample: 50% # HERE\n", "access_log.sample", "number"},
		{"sample nan", "access_log:\n  sample: .nan # HERE\n", "access_log.sample", "0 to 1"},
		{"access path stderr", "access_log:\n  path: stderr # HERE\n", "access_log.path", "stderr"},
		{"access path empty", "access_log:\n  path: \"\" # HERE\n", "access_log.path", "stdout"},
		{"tag", "watch_config: !env X # HERE\n", "watch_config", "tag"},
		{"defined twice", "shutdown_timeout: 1s\nshutdown_timeout: 2s # HERE\n", "shutdown_timeout", "twice"},
		{"pool defined twice", "!full\n" + strings.Replace(r25OpsBase, "  api:\n", "  web: # HERE\n    backends: [{address: 127.0.0.1:1}]\n  api:\n", 1), "pools.web", "twice"},
		{"unknown algorithm", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: roundrobin # HERE", 1), "pools.web.algorithm", "unknown algorithm"},
		{"weight negative", "!full\n" + strings.Replace(r25OpsBase, "weight: 1 }", "weight: -1 } # HERE", 1), "pools.web.backends[0].weight", ">= 0"},
		{"weight fraction", "!full\n" + strings.Replace(r25OpsBase, "weight: 1 }", "weight: 0.5 } # HERE", 1), "pools.web.backends[0].weight", "integer"},
		{"weight big", "!full\n" + strings.Replace(r25OpsBase, "weight: 1 }", "weight: 1000001 } # HERE", 1), "pools.web.backends[0].weight", "1000000"},
		{"weight bool", "!full\n" + strings.Replace(r25OpsBase, "weight: 1 }", "weight: true } # HERE", 1), "pools.web.backends[0].weight", "integer"},
		{"backend typo key", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ address: 127.0.0.1:9002, wieght: 2 } # HERE", 1), "pools.web.backends[1].wieght", "unknown field"},
		{"backend no port", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ address: 127.0.0.1 } # HERE", 1), "pools.web.backends[1].address", "host:port"},
		{"backend no host", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ address: \":9002\" } # HERE", 1), "pools.web.backends[1].address", "host"},
		{"backend bad ip", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ address: 999.1.1.1:80 } # HERE", 1), "pools.web.backends[1].address", "bad host"},
		{"backend dup", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ address: 127.0.0.1:09001 } # HERE", 1), "pools.web.backends[1].address", "duplicate"},
		{"backend missing address", "!full\n" + strings.Replace(r25OpsBase, "{ address: 127.0.0.1:9002 }", "{ weight: 2 } # HERE", 1), "pools.web.backends[1].address", "required"},
		{"unknown pool", "!full\n" + strings.Replace(r25OpsBase, "    pool: web", "    pool: nope # HERE", 1), "routes[1].pool", "unknown pool"},
		{"route dup", "!full\n" + strings.Replace(r25OpsBase, "  - match: { path_prefix: / }", "  - match: { host: API.example.com, path_prefix: /v1/ } # HERE", 1), "routes[1].match", "same match"},
		{"route bad host", "!full\n" + strings.Replace(r25OpsBase, "  - match: { path_prefix: / }", "  - match: { host: \"exa mple.com\" } # HERE", 1), "routes[1].match.host", "host name"},
		{"route prefix no slash", "!full\n" + strings.Replace(r25OpsBase, "  - match: { path_prefix: / }", "  - match: { path_prefix: api } # HERE", 1), "routes[1].match.path_prefix", "start with /"},
		{"panic over 100", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    panic_threshold: 150% # HERE", 1), "pools.web.panic_threshold", "percentage"},
		{"panic word", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    panic_threshold: half # HERE", 1), "pools.web.panic_threshold", "percentage"},
		{"max ejection percent", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    outlier_detection:\n      max_ejection_percent: 101 # HERE", 1), "pools.web.outlier_detection.max_ejection_percent", "percentage"},
		{"max ejection time", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    outlier_detection:\n      base_ejection_time: 60s\n      max_ejection_time: 30s # HERE", 1), "pools.web.outlier_detection.max_ejection_time", "base_ejection_time"},
		{"health interval tiny", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      interval: 10ms # HERE", 1), "pools.web.health_check.interval", ">="},
		{"health type", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      type: udp # HERE", 1), "pools.web.health_check.type", "http or tcp"},
		{"health status 99", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      expect_status:\n        - 200\n        - 99 # HERE", 1), "pools.web.health_check.expect_status[1]", "status"},
		{"health status reversed", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      expect_status: [399-200] # HERE", 1), "pools.web.health_check.expect_status[0]", "status"},
		{"health path", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      path: healthz # HERE", 1), "pools.web.health_check.path", "start with /"},
		{"health threshold 0", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    health_check:\n      healthy_threshold: 0 # HERE", 1), "pools.web.health_check.healthy_threshold", ">= 1"},
		{"maglev size", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: maglev\n    hash_key: path\n    maglev_table_size: 100 # HERE", 1), "pools.web.maglev_table_size", "prime"},
		{"hash key bad", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: ring_hash\n    hash_key: \"header:\" # HERE", 1), "pools.web.hash_key", "token"},
		{"ewma window", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: ewma\n    ewma_window: 0s # HERE", 1), "pools.web.ewma_window", "> 0"},
		{"slow start negative", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    slow_start: -1s # HERE", 1), "pools.web.slow_start", ">= 0"},
		{"sticky cookie", "!full\n" + strings.Replace(r25OpsBase, "algorithm: round_robin", "algorithm: round_robin\n    sticky: {cookie: \"a b\"} # HERE", 1), "pools.web.sticky.cookie", "cookie name"},
		{"dns type", "!full\n" + strings.Replace(r25OpsBase, "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n", "  api:\n    discovery:\n      dns:\n        name: api.internal\n        port: 80\n        type: AAAA # HERE\n", 1), "pools.api.discovery.dns.type", "A or SRV"},
		{"dns port", "!full\n" + strings.Replace(r25OpsBase, "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n", "  api:\n    discovery:\n      dns:\n        name: api.internal\n        port: 0 # HERE\n", 1), "pools.api.discovery.dns.port", "1-65535"},
		{"dns resolver", "!full\n" + strings.Replace(r25OpsBase, "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n", "  api:\n    discovery:\n      dns:\n        name: api.internal\n        port: 80\n        resolver: 10.0.0.1 # HERE\n", 1), "pools.api.discovery.dns.resolver", "host:port"},
		{"dns interval", "!full\n" + strings.Replace(r25OpsBase, "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n", "  api:\n    discovery:\n      dns:\n        name: api.internal\n        port: 80\n        interval: 1ms # HERE\n", 1), "pools.api.discovery.dns.interval", ">="},
		{"pools list", "!full\n" + strings.Replace(r25OpsBase, "routes:", "pools_x: 1 # HERE\nroutes:", 1), "pools_x", "unknown field"},
		{"multi-line flow", "!full\n" + strings.Replace(r25OpsBase, "    algorithm: round_robin\n", "    algorithm: { # HERE\n      x: 1 }\n", 1), "pools.web.algorithm", "string"},
		{"dotted pool name", "!full\n" + strings.Replace(r25OpsBase, "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n", "  api:\n    backends:\n      - { address: 127.0.0.1:9101 }\n  a.b:\n    backends:\n      - address: 127.0.0.1:1\n      - address: 127.0.0.1:1 # HERE\n", 1), "pools.a.b.backends[1].address", "duplicate"},
		{"value on next line (decode)", "timeouts:\n  connect:\n    5 # HERE\n", "timeouts.connect", "duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := r25OpsBase + tt.give
			if rest, ok := strings.CutPrefix(tt.give, "!full\n"); ok {
				text = rest
			}
			want := r25OpsHereLine(text)
			if want == 0 {
				t.Fatalf("case has no # HERE line:\n%s", text)
			}
			_, err := Parse("s.yaml", []byte(text))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse() error = %v, want Errors\n%s", err, text)
			}
			for _, e := range es {
				if e.Path == tt.path {
					if e.File != "s.yaml" || e.Line != want || !strings.Contains(e.Msg, tt.msg) {
						t.Errorf("error = %q (line %d), want s.yaml:%d: %s: ...%s...\n%s", e.Error(), e.Line, want, tt.path, tt.msg, text)
					}
					if len(es) != 1 {
						t.Errorf("%d errors, want 1: %v", len(es), es)
					}
					return
				}
			}
			t.Errorf("no error at %s; got %v\n%s", tt.path, es, text)
		})
	}
}

// TestOpsSyntaxErrorOnFirstLine: a YAML syntax error in a
// construct that starts on the file's first line is named at that line,
// as the same mistake one line lower is named at its line. yaml.v3 takes
// a context mark on line 0 for "none" and falls back to where it gave
// up: an unclosed quote on line 1 was named at the end of the file, a
// line the file does not have.
func TestOpsSyntaxErrorOnFirstLine(t *testing.T) {
	const rest = "routes: []\npools: {}\nshutdown_delay: 1s\ndrain_timeout: 2s\n" // lines 2-5
	tests := []struct {
		name string
		give string
		want int
	}{
		{"unclosed double quote, line 1", "listen: \"127.0.0.1:8080\n" + rest, 1},
		{"unclosed single quote, line 1", "listen: '127.0.0.1:8080\n" + rest, 1},
		// A flow collection's error is named where it shows, the next
		// line here (TestSyntaxLineFlow).
		{"unclosed flow sequence, line 1", "routes: [{pool: web}\n" + rest, 2},
		// The same one line lower: named where it starts (these pass).
		{"unclosed double quote, line 2", "# sluice\nlisten: \"127.0.0.1:8080\n" + rest, 2},
		{"unclosed flow sequence, line 2", "# sluice\nroutes: [{pool: web}\n" + rest, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(tt.give))
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Parse() error = %v, want one syntax error", err)
			}
			if es[0].Line != tt.want {
				t.Errorf("Parse() = %q, want it at line %d (the file has %d lines)", es[0].Error(), tt.want, strings.Count(tt.give, "\n"))
			}
		})
	}
}

// TestOpsNonSpecificTagRefused: the README says a tag is refused
// (sluice expands none) and that an empty value must not silently turn
// the sticky secret off. YAML's non-specific tag "!" slipped through:
// "secret: !" left the cookie unkeyed without a word, and "secret: ! x"
// keyed it with "x", the text after the tag (the class of
// TestUnknownTagRefused and TestSecStickySecretNotSilentlyDropped).
func TestOpsNonSpecificTagRefused(t *testing.T) {
	const base = "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:1}]\n    sticky:\n      cookie: sid\n"
	for _, give := range []string{"      secret: !\n", "      secret: ! S3cret\n"} {
		c, err := Parse("s.yaml", []byte(base+give))
		if err == nil {
			t.Errorf("%q: Parse() took it, secret %q; want an error at s.yaml:7: pools.web.sticky.secret", give, c.Pools["web"].Sticky.Secret)
			continue
		}
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 7 || es[0].Path != "pools.web.sticky.secret" {
			t.Errorf("%q: Parse() error = %v, want one at s.yaml:7: pools.web.sticky.secret", give, err)
		}
	}
}
