package config

import (
	"strings"
	"testing"
	"time"
)

// reviewBase is a minimal valid config: one route, one pool, one backend.
const reviewBase = "routes: [{pool: web}]\npools:\n  web:\n    backends: [{address: 127.0.0.1:9001}]\n"

// reviewWant parses text and checks that it is refused with an error that
// contains want (file, line and field path), or accepted when want is "".
func reviewWant(t *testing.T, text, want string) {
	t.Helper()
	c, err := Parse("sluice.yaml", []byte(text))
	if want == "" {
		if err != nil {
			t.Fatalf("Parse() error:\n%v\nwant none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Parse() accepted the config (listen %q), want an error containing %q", c.Listen, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse() error =\n%v\nwant it to contain %q", err, want)
	}
}

// TestConfigReviewSampleNaN: the README gives access_log.sample a range
// "from 0 to 1", and panic_threshold refuses NaN: so does sample. (Found
// by review: `.nan` passed both `< 0` and `> 1`, and the log wrote nothing.)
func TestConfigReviewSampleNaN(t *testing.T) {
	reviewWant(t, reviewBase+"access_log: {enabled: true, sample: .nan}\n",
		"sluice.yaml:5: access_log.sample: must be from 0 to 1")
}

// TestConfigReviewBadHost: a backend address whose host is neither an IP
// address nor a host name is refused ("bad host"): an out-of-range dotted
// quad, or a name whose top label is all digits (never a host name).
// (Found by review: they passed, and every dial failed at run time.)
func TestConfigReviewBadHost(t *testing.T) {
	for _, addr := range []string{"999.1.1.1:9001", "1.2.3.4.5:9001", "10.0.0.256:9001"} {
		t.Run(addr, func(t *testing.T) {
			reviewWant(t, strings.Replace(reviewBase, "127.0.0.1:9001", addr, 1),
				"sluice.yaml:4: pools.web.backends[0].address: bad host")
		})
	}
}

// TestConfigReviewDuplicateBackendSpelling: "Addresses must be unique in
// a pool" holds for the socket, not the spelling: 127.0.0.1:09001 is
// 127.0.0.1:9001. (Found by review: both were taken, the backend with
// twice its share.)
func TestConfigReviewDuplicateBackendSpelling(t *testing.T) {
	reviewWant(t, strings.Replace(reviewBase, "[{address: 127.0.0.1:9001}]",
		"[{address: 127.0.0.1:9001}, {address: 127.0.0.1:09001}]", 1),
		"pools.web.backends[1].address: duplicate backend")
}

// TestConfigReviewListenEqualsAdmin: listen and admin.listen on the same
// address are refused by Parse (and so `sluice -check`), as sluice could
// not start on them. (Found by review: -check said valid.)
func TestConfigReviewListenEqualsAdmin(t *testing.T) {
	reviewWant(t, reviewBase+"listen: 127.0.0.1:8080\nadmin: {listen: 127.0.0.1:8080}\n",
		"sluice.yaml:6: admin.listen")
}

// TestConfigReviewDurationNotScalar: a list given for a duration is
// refused with a message that asks for a duration. (Found by review: it
// said "want an integer", from the int64 under time.Duration.)
func TestConfigReviewDurationNotScalar(t *testing.T) {
	reviewWant(t, reviewBase+"timeouts: {connect: [1]}\n",
		"sluice.yaml:5: timeouts.connect: want a duration")
}

// TestConfigReviewDefaults checks every default of the README's tables
// (Top level, Pools, Active checks, Outlier detection, Service discovery)
// against what Parse applies to a minimal file. New coverage: the existing
// tests check only algorithm, weight, shutdown_timeout, retries,
// preserve_host and forwarding.
func TestConfigReviewDefaults(t *testing.T) {
	text := "routes: [{pool: web}, {pool: dns, match: {path_prefix: /d/}}]\npools:\n" +
		"  web:\n    backends: [{address: 127.0.0.1:9001}]\n    health_check: {}\n    outlier_detection: {}\n    sticky: {}\n" +
		"  dns:\n    discovery: {dns: {name: api.internal, port: 8080}}\n"
	c, err := Parse("sluice.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	web, dns := c.Pools["web"], c.Pools["dns"]
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"listen_reuseport", c.ListenReusePort, false},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9901"},
		{"timeouts.connect", c.Timeouts.Connect, 2 * time.Second},
		{"timeouts.response", c.Timeouts.Response, 30 * time.Second},
		{"timeouts.client_read", c.Timeouts.ClientRead, 30 * time.Second},
		{"timeouts.client_write", c.Timeouts.ClientWrite, 30 * time.Second},
		{"timeouts.idle", c.Timeouts.Idle, 90 * time.Second},
		{"timeouts.upstream_idle", c.Timeouts.UpstreamIdle, 2 * time.Second},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, 8192},
		{"limits.max_body_bytes", c.Limits.MaxBodyBytes, 8388608},
		{"limits.max_response_bytes", c.Limits.MaxResponseBytes, 67108864},
		{"limits.max_client_conns", c.Limits.MaxClientConns, 262144},
		{"limits.max_conns_per_backend", c.Limits.MaxConnsPerBackend, 1024},
		{"retries.attempts", c.Retries.Attempts, 2},
		{"preserve_host", c.PreserveHost, true},
		{"forwarding.x_forwarded_for", c.Forwarding.XForwardedFor, "append"},
		{"forwarding.x_forwarded_proto", c.Forwarding.XForwardedProto, true},
		{"forwarding.x_forwarded_host", c.Forwarding.XForwardedHost, true},
		{"forwarding.request_id", c.Forwarding.RequestID, true},
		{"shutdown_timeout", c.ShutdownTimeout, 30 * time.Second},
		{"shutdown_delay", c.ShutdownDelay, time.Duration(0)},
		{"drain_timeout", c.DrainTimeout, 30 * time.Second},
		{"watch_config", c.WatchConfig, true},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "auto"},
		{"access_log.enabled", c.AccessLog.Enabled, false},
		{"access_log.path", c.AccessLog.Path, "stdout"},
		{"access_log.sample", c.AccessLog.Sample, 1.0},
		{"pool algorithm", web.Algorithm, "p2c"},
		{"pool weight", web.Backends[0].Weight, 1},
		{"pool preserve_host", web.PreserveHost == nil, true},
		{"pool ewma_window", web.EWMAWindow, 10 * time.Second},
		{"pool maglev_table_size", web.MaglevTableSize, 65537},
		{"pool slow_start", web.SlowStart, time.Duration(0)},
		{"pool panic_threshold", web.PanicThreshold, Percent(0)},
		{"health_check.type", web.HealthCheck.Type, "http"},
		{"health_check.path", web.HealthCheck.Path, "/healthz"},
		{"health_check.interval", web.HealthCheck.Interval, 2 * time.Second},
		{"health_check.timeout", web.HealthCheck.Timeout, time.Second},
		{"health_check.healthy_threshold", web.HealthCheck.HealthyThreshold, 2},
		{"health_check.unhealthy_threshold", web.HealthCheck.UnhealthyThreshold, 3},
		{"outlier.consecutive_failures", web.OutlierDetection.ConsecutiveFailures, 5},
		{"outlier.base_ejection_time", web.OutlierDetection.BaseEjectionTime, 30 * time.Second},
		{"outlier.max_ejection_time", web.OutlierDetection.MaxEjectionTime, 300 * time.Second},
		{"outlier.max_ejection_percent", web.OutlierDetection.MaxEjectionPercent, Percent(50)},
		{"dns.type", dns.Discovery.DNS.Type, "A"},
		{"dns.interval", dns.Discovery.DNS.Interval, 5 * time.Second},
		{"dns.resolver", dns.Discovery.DNS.Resolver, ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v (README)", tt.name, tt.got, tt.want)
		}
	}
}

// TestConfigReviewYAMLForms: wrong units, number spellings and YAML
// features, each refused with file, line and field path or accepted.
// New coverage: BOM, tab indentation, merge keys, aliases, bare-number and
// exponent durations, an exponent or a quoted string for an integer, a
// null first document, wrong nesting.
func TestConfigReviewYAMLForms(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"BOM", "\ufeff" + reviewBase, ""},
		{"BOM keeps line numbers", "\ufeff" + reviewBase + "bogus: 1\n", "sluice.yaml:5: bogus: unknown field"},
		{"tab indentation", "routes: [{pool: web}]\npools:\n\tweb:\n    backends: [{address: 127.0.0.1:9001}]\n",
			"sluice.yaml:3: invalid YAML"},
		{"alias", "routes: [{pool: web}, {pool: api, match: {path_prefix: /a/}}]\npools:\n  web: &w\n    backends: [{address: 127.0.0.1:9001}]\n  api: *w\n", ""},
		{"merge key", "routes: [{pool: web}]\npools:\n  web: &w\n    backends: [{address: 127.0.0.1:9001}]\n  api:\n    <<: *w\n",
			"sluice.yaml:6: pools.api.<<: unknown field"},
		{"bare number duration", reviewBase + "timeouts: {connect: 5}\n",
			"sluice.yaml:5: timeouts.connect: want a duration such as 2s or 150ms, got \"5\""},
		{"exponent duration", reviewBase + "drain_timeout: 1e9\n",
			"sluice.yaml:5: drain_timeout: want a duration"},
		{"exponent integer", reviewBase + "limits: {max_body_bytes: 1e9}\n",
			"sluice.yaml:5: limits.max_body_bytes: want an integer, got \"1e9\""},
		{"string integer", reviewBase + "limits: {max_body_bytes: \"100\"}\n",
			"sluice.yaml:5: limits.max_body_bytes: want an integer, got \"100\""},
		{"overflowing integer", reviewBase + "retries: {attempts: 99999999999999999999}\n",
			"sluice.yaml:5: retries.attempts: want an integer"},
		{"negative duration", reviewBase + "shutdown_delay: -1s\n",
			"sluice.yaml:5: shutdown_delay: must be >= 0"},
		{"null first document", "~\n---\n" + reviewBase,
			"sluice.yaml:2: a second YAML document"},
		{"wrong nesting", reviewBase + "timeouts: {admin: {listen: x}}\n",
			"sluice.yaml:5: timeouts.admin: unknown field"},
		{"backend at top level", reviewBase + "backends: []\n",
			"sluice.yaml:5: backends: unknown field"},
		{"null pool", "routes: [{pool: web}]\npools:\n  web:\n", "sluice.yaml:3: pools.web: empty pool"},
		{"access log to a file named stderr", reviewBase + "access_log: {enabled: true, path: stderr}\n",
			"sluice.yaml:5: access_log.path: stderr is a file name here"},
		{"access log to /dev/stderr", reviewBase + "access_log: {enabled: true, path: /dev/stderr}\n", ""},
		{"admin on localhost at listen's port", reviewBase + "listen: 127.0.0.1:8080\nadmin: {listen: \"localhost:8080\"}\n",
			"sluice.yaml:6: admin.listen: localhost:8080 takes the port of listen"},
		{"admin on loopback at another port", reviewBase + "listen: 127.0.0.1:8080\nadmin: {listen: \"localhost:8081\"}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { reviewWant(t, tt.text, tt.want) })
	}
}
