package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validYAML = `listen: 127.0.0.1:8080
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
timeouts: { connect: 2s, response: 30s, client_read: 30s, client_write: 30s, idle: 90s }
`

func TestParseValid(t *testing.T) {
	c, err := Parse("sluice.yaml", []byte(validYAML))
	if err != nil {
		t.Fatalf("Parse() error: %v", err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"routes", len(c.Routes), 2},
		{"route host", c.Routes[0].Match.Host, "api.example.com"},
		{"web algorithm", c.Pools["web"].Algorithm, "round_robin"},
		{"default algorithm", c.Pools["api"].Algorithm, "p2c"},
		{"explicit weight", c.Pools["web"].Backends[0].Weight, 1},
		{"default weight", c.Pools["web"].Backends[1].Weight, 1},
		{"connect timeout", c.Timeouts.Connect, 2 * time.Second},
		{"default shutdown timeout", c.ShutdownTimeout, 30 * time.Second},
		{"default retries", c.Retries.Attempts, 2},
		{"default preserve_host", c.PreserveHost, true},
		{"default forwarding", c.Forwarding, Forwarding{XForwardedFor: "append", XForwardedProto: true, XForwardedHost: true, RequestID: true}},
		{"line of a field", c.Line("pools.web.backends[1].address"), 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		give string // replaces validYAML's text: old => new
		want []string
	}{
		{"negative weight", "{ address: 127.0.0.1:9002 }=>{ address: 127.0.0.1:9002, weight: -1 }",
			[]string{"sluice.yaml:14: pools.web.backends[1].weight: must be >= 0"}},
		{"unknown key", "  listen: 127.0.0.1:9901=>  listen: 127.0.0.1:9901\n  lisen: x",
			[]string{"sluice.yaml:4: admin.lisen: unknown field"}},
		{"wrong type", "weight: 1 }=>weight: heavy }",
			[]string{"sluice.yaml:13: pools.web.backends[0].weight: want an integer, got \"heavy\""}},
		{"fraction in an integer", "weight: 1 }=>weight: 0.9 }",
			[]string{"sluice.yaml:13: pools.web.backends[0].weight: want an integer, got \"0.9\""}},
		{"fraction in a size", "timeouts: {=>limits: { max_body_bytes: 1.5 }\ntimeouts: {",
			[]string{"sluice.yaml:18: limits.max_body_bytes: want an integer, got \"1.5\""}},
		{"missing pool", "pool: api=>pool: apl",
			[]string{"sluice.yaml:6: routes[0].pool: unknown pool \"apl\""}},
		{"bad address", "127.0.0.1:9101=>127.0.0.1:99999",
			[]string{"sluice.yaml:17: pools.api.backends[0].address: port must be 1-65535"}},
		{"address without port", "127.0.0.1:9101=>localhost",
			[]string{"pools.api.backends[0].address: want host:port"}},
		{"duplicate backend", "127.0.0.1:9002=>127.0.0.1:9001",
			[]string{"sluice.yaml:14: pools.web.backends[1].address: duplicate backend 127.0.0.1:9001"}},
		{"bad duration", "connect: 2s=>connect: soon",
			[]string{"sluice.yaml:18: timeouts.connect: want a duration"}},
		{"unknown algorithm", "round_robin=>round_robbin",
			[]string{"sluice.yaml:11: pools.web.algorithm: unknown algorithm \"round_robbin\""}},
		{"bad hash key", "    algorithm: round_robin=>    algorithm: ring_hash\n    hash_key: \"header:\"",
			[]string{"pools.web.hash_key: header name \"\" must be a non-empty token"}},
		{"bad wildcard", "host: api.example.com=>host: api.*.com",
			[]string{"routes[0].match.host: want a host name or *.domain"}},
		{"prefix without slash", "path_prefix: /v1/=>path_prefix: v1",
			[]string{"routes[0].match.path_prefix: must start with /"}},
		{"duplicate route", "host: api.example.com, path_prefix: /v1/=>path_prefix: /",
			[]string{"routes[1].match: same match as routes[0]"}},
		{"list instead of map", "timeouts: { connect: 2s, response: 30s, client_read: 30s, client_write: 30s, idle: 90s }=>timeouts: [1, 2]",
			[]string{"sluice.yaml:18: timeouts: want a mapping, got a list"}},
		{"duplicate key", "listen: 127.0.0.1:8080=>listen: 127.0.0.1:8080\nlisten: 127.0.0.1:8081",
			[]string{"sluice.yaml:2: listen: defined twice"}},
		{"pool without backends", "      - { address: 127.0.0.1:9101 }=>      []",
			[]string{"pools.api.backends: a pool needs backends or discovery"}},
		{"invalid yaml", "pools:=>pools: [",
			[]string{"invalid YAML"}},
		{"zero response limit", "timeouts: {=>limits: { max_response_bytes: 0 }\ntimeouts: {",
			[]string{"limits.max_response_bytes: must be > 0"}},
		{"huge header limit", "timeouts: {=>limits: { max_header_bytes: 1073741824 }\ntimeouts: {",
			[]string{"limits.max_header_bytes: must be from 1024 to 1048576"}},
		{"zero client connections", "timeouts: {=>limits: { max_client_conns: 0 }\ntimeouts: {",
			[]string{"sluice.yaml:18: limits.max_client_conns: must be from 1 to 16777216"}},
		{"huge connection limit", "timeouts: {=>limits: { max_conns_per_backend: 100000000 }\ntimeouts: {",
			[]string{"limits.max_conns_per_backend: must be from 1 to 65535"}},
		{"zero upstream idle", "idle: 90s }=>idle: 90s, upstream_idle: 0s }",
			[]string{"sluice.yaml:18: timeouts.upstream_idle: must be > 0"}},
		{"hash without a key", "    algorithm: round_robin=>    algorithm: maglev",
			[]string{"pools.web.hash_key: required for maglev"}},
		{"second document", "timeouts: {=>---\nfoo: 1\n---\ntimeouts: {",
			[]string{"a second YAML document (after ---): sluice reads one"}},
		{"unknown x_forwarded_for", "timeouts: {=>forwarding: { x_forwarded_for: keep }\ntimeouts: {",
			[]string{"sluice.yaml:18: forwarding.x_forwarded_for: must be append, replace or pass"}},
		{"forwarding flag not a bool", "timeouts: {=>forwarding: { request_id: maybe }\ntimeouts: {",
			[]string{"sluice.yaml:18: forwarding.request_id: want"}},
		{"every error at once", "weight: 1 }=>weight: -3 }\n      - { address: nope }",
			[]string{"pools.web.backends[0].weight: must be >= 0", "pools.web.backends[1].address: want host:port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, repl, _ := strings.Cut(tt.give, "=>")
			if !strings.Contains(validYAML, old) {
				t.Fatalf("test setup: %q not in the base config", old)
			}
			_, err := Parse("sluice.yaml", []byte(strings.Replace(validYAML, old, repl, 1)))
			if err == nil {
				t.Fatalf("Parse() = nil error, want %q", tt.want)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse() error type %T, want Errors", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error =\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	if _, err := Parse("empty.yaml", nil); err == nil || !strings.Contains(err.Error(), "empty.yaml: empty config file") {
		t.Errorf("Parse(empty) error = %v, want empty config file", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(validYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load(valid) error: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
}

// TestExamples keeps every shipped example config valid.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	files = append(files, "../sluice.yaml")
	n := 0
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("Load(%s) error:\n%v", f, err)
			}
		})
	}
	if n == 0 {
		t.Fatal("no example configs found")
	}
}

func TestParseHashKey(t *testing.T) {
	tests := []struct {
		give    string
		want    HashKey
		wantErr bool
	}{
		{"", HashKey{}, false},
		{"source_ip", HashKey{Kind: HashSourceIP}, false},
		{"path", HashKey{Kind: HashPath}, false},
		{"host", HashKey{Kind: HashHost}, false},
		{"header:X-User", HashKey{Kind: HashHeader, Name: "X-User"}, false},
		{"cookie:session", HashKey{Kind: HashCookie, Name: "session"}, false},
		{"query:uid", HashKey{Kind: HashQuery, Name: "uid"}, false},
		{"header:", HashKey{}, true},
		{"header:a b", HashKey{}, true},
		{"body:x", HashKey{}, true},
		{"ip", HashKey{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParseHashKey(tt.give)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseHashKey(%q) = %v, %v; want %v, error %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParsePercentAndStatus(t *testing.T) {
	pct := []struct {
		give string
		want Percent
		ok   bool
	}{{"50%", 50, true}, {"12.5", 12.5, true}, {"101%", 0, false}, {"-1", 0, false}, {"NaN", 0, false}, {"x", 0, false}}
	for _, tt := range pct {
		got, err := ParsePercent(tt.give)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v ok=%v", tt.give, got, err, tt.want, tt.ok)
		}
	}
	st := []struct {
		give string
		want StatusRange
		ok   bool
	}{{"200", StatusRange{200, 200}, true}, {"200-399", StatusRange{200, 399}, true}, {"399-200", StatusRange{}, false}, {"600", StatusRange{}, false}}
	for _, tt := range st {
		got, err := ParseStatusRange(tt.give)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseStatusRange(%q) = %v, %v; want %v ok=%v", tt.give, got, err, tt.want, tt.ok)
		}
	}
}

// probeYAML is a valid config with a health check and DNS discovery, for
// the tests of their fields.
const probeYAML = `routes: [{pool: web}, {match: {path_prefix: /api/}, pool: api}]
pools:
  web:
    backends: [{address: 127.0.0.1:9001}]
    health_check:
      path: /healthz
      host: web.internal
      interval: 2s
      timeout: 1s
  api:
    discovery:
      dns: { name: api.internal, port: 8080, interval: 5s }
`

func TestParseProbeErrors(t *testing.T) {
	tests := []struct {
		name string
		give string // replaces probeYAML's text: old => new
		want string // empty: the config must be accepted
	}{
		{"valid", "", ""},
		{"host with port", "host: web.internal=>host: web.internal:8080", ""},
		{"ipv4 host", "host: web.internal=>host: 10.0.0.1", ""},
		{"bracketed ipv6 host", "host: web.internal=>host: \"[::1]:8080\"", ""},
		{"path with query", "path: /healthz=>path: /healthz?full=1", ""},
		{"health interval at minimum", "interval: 2s=>interval: 50ms", ""},
		{"dns interval at minimum", "interval: 5s=>interval: 50ms", ""},
		{"tcp check ignores path", "path: /healthz=>type: tcp\n      path: healthz", ""},
		{"path without slash", "path: /healthz=>path: healthz",
			"sluice.yaml:6: pools.web.health_check.path: must start with /"},
		{"empty path", "path: /healthz=>path: \"\"",
			"sluice.yaml:6: pools.web.health_check.path: must start with /"},
		{"path with space", "path: /healthz=>path: \"/health z\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII without spaces"},
		{"path with CRLF", "path: /healthz=>path: \"/healthz\\r\\nX-Evil: 1\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII without spaces"},
		{"path with LF", "path: /healthz=>path: \"/healthz\\n\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII"},
		{"path with tab", "path: /healthz=>path: \"/a\\tb\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII"},
		{"path with NUL", "path: /healthz=>path: \"/a\\0b\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII"},
		{"path with DEL", "path: /healthz=>path: \"/a\\x7fb\"",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII"},
		{"path not ASCII", "path: /healthz=>path: /héalth",
			"sluice.yaml:6: pools.web.health_check.path: must be printable ASCII"},
		{"host with space", "host: web.internal=>host: \"web internal\"",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port, got \"web internal\""},
		{"host with CRLF", "host: web.internal=>host: \"web.internal\\r\\nX-Evil: 1\"",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"host not ASCII", "host: web.internal=>host: wéb.internal",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"host with bad port", "host: web.internal=>host: web.internal:0",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"host with empty port", "host: web.internal=>host: \"web.internal:\"",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"port without host", "host: web.internal=>host: \":8080\"",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"host with path", "host: web.internal=>host: web.internal/x",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"unbracketed ipv6 host", "host: web.internal=>host: \"::1\"",
			"sluice.yaml:7: pools.web.health_check.host: want a host or host:port"},
		{"health interval too short", "interval: 2s=>interval: 1ns",
			"sluice.yaml:8: pools.web.health_check.interval: must be >= 50ms, got 1ns"},
		{"health interval just under", "interval: 2s=>interval: 49ms",
			"sluice.yaml:8: pools.web.health_check.interval: must be >= 50ms"},
		{"health interval zero", "interval: 2s=>interval: 0s",
			"sluice.yaml:8: pools.web.health_check.interval: must be >= 50ms"},
		{"health timeout zero", "timeout: 1s=>timeout: 0s",
			"sluice.yaml:9: pools.web.health_check.timeout: must be > 0"},
		{"dns interval too short", "interval: 5s=>interval: 1ns",
			"sluice.yaml:12: pools.api.discovery.dns.interval: must be >= 50ms, got 1ns"},
		{"dns interval negative", "interval: 5s=>interval: -1s",
			"sluice.yaml:12: pools.api.discovery.dns.interval: must be >= 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := probeYAML
			if tt.give != "" {
				old, repl, _ := strings.Cut(tt.give, "=>")
				if !strings.Contains(yml, old) {
					t.Fatalf("test setup: %q not in the base config", old)
				}
				yml = strings.Replace(yml, old, repl, 1)
			}
			_, err := Parse("sluice.yaml", []byte(yml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse() error:\n%v\nwant none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error =\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBackendAddress(t *testing.T) {
	tests := []struct{ give, want string }{
		{"127.0.0.1:9001", "127.0.0.1:9001"},
		{"127.0.0.1:09001", "127.0.0.1:9001"},
		{"[::FFFF:127.0.0.1]:80", "127.0.0.1:80"},
		{"[2001:DB8:0:0:0:0:0:1]:443", "[2001:db8::1]:443"},
		{"api.internal.:080", "api.internal.:80"},
		{"API.internal:8080", "api.internal:8080"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := BackendAddress(tt.give); got != tt.want {
			t.Errorf("BackendAddress(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
