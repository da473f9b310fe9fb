package config

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxHeaderBytesLimit is the largest limits.max_header_bytes (1 MiB).
const MaxHeaderBytesLimit = 1 << 20

// MaxClientConnsLimit is the largest limits.max_client_conns (each served
// connection costs a goroutine and about 14 KiB at least).
const MaxClientConnsLimit = 1 << 24

// MaxConnsPerBackendLimit is the largest limits.max_conns_per_backend.
const MaxConnsPerBackendLimit = 65535

// MaxAttempts bounds retries.attempts (the data plane keeps the targets a
// request tried in an array this long).
const MaxAttempts = 10

// algorithms are the names accepted by a pool's algorithm field.
var algorithms = []string{"round_robin", "random", "least_conn", "p2c", "ewma", "ring_hash", "maglev", "sticky"}

// validate checks the decoded config as a whole and returns every problem.
func (c *Config) validate() Errors {
	v := &validator{c: c}
	v.address("listen", c.Listen)
	if c.Admin.Listen != "" {
		v.address("admin.listen", c.Admin.Listen)
		if CheckAddress(c.Listen) == nil && CheckAddress(c.Admin.Listen) == nil && SameSocket(c.Listen, c.Admin.Listen) {
			// At listen's line when admin.listen is left at its default
			// (found by review: the error had no line).
			v.errs = append(v.errs, FieldError{File: c.File, Line: c.FirstLine("admin.listen", "listen"), Path: "admin.listen",
				Msg: fmt.Sprintf("%s takes the port of listen (%s): they must differ", c.Admin.Listen, c.Listen)})
		}
	}
	v.positive("timeouts.connect", int64(c.Timeouts.Connect))
	v.positive("timeouts.response", int64(c.Timeouts.Response))
	v.positive("timeouts.client_read", int64(c.Timeouts.ClientRead))
	v.positive("timeouts.client_write", int64(c.Timeouts.ClientWrite))
	v.positive("timeouts.idle", int64(c.Timeouts.Idle))
	v.positive("shutdown_timeout", int64(c.ShutdownTimeout))
	v.positive("drain_timeout", int64(c.DrainTimeout))
	if c.ShutdownDelay < 0 {
		v.fail("shutdown_delay", "must be >= 0")
	}
	v.positive("timeouts.upstream_idle", int64(c.Timeouts.UpstreamIdle))
	// The header limit is every client connection's read buffer, so a
	// huge one is memory per connection (Envoy caps it at 8 MiB, nginx's
	// default is 8 KiB).
	if c.Limits.MaxHeaderBytes < 1024 || c.Limits.MaxHeaderBytes > MaxHeaderBytesLimit {
		v.fail("limits.max_header_bytes", "must be from 1024 to %d", MaxHeaderBytesLimit)
	}
	v.positive("limits.max_body_bytes", int64(c.Limits.MaxBodyBytes))
	// 0 would mean "no limit" to the upstream client, not "nothing".
	v.positive("limits.max_response_bytes", int64(c.Limits.MaxResponseBytes))
	// The upstream client reserves a slot (32 bytes) per allowed
	// connection up front; one source address cannot open more than
	// 65535 connections to one backend address anyway.
	if c.Limits.MaxConnsPerBackend < 1 || c.Limits.MaxConnsPerBackend > MaxConnsPerBackendLimit {
		v.fail("limits.max_conns_per_backend", "must be from 1 to %d", MaxConnsPerBackendLimit)
	}
	if c.Limits.MaxClientConns < 1 || c.Limits.MaxClientConns > MaxClientConnsLimit {
		v.fail("limits.max_client_conns", "must be from 1 to %d", MaxClientConnsLimit)
	}
	if c.Retries.Attempts < 1 || c.Retries.Attempts > MaxAttempts {
		v.fail("retries.attempts", "must be from 1 to %d", MaxAttempts)
	}
	switch c.Forwarding.XForwardedFor {
	case "append", "replace", "pass":
	default:
		v.fail("forwarding.x_forwarded_for", "must be append, replace or pass")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		v.fail("log.format", "must be auto, json or console")
	}
	if !(c.AccessLog.Sample >= 0 && c.AccessLog.Sample <= 1) { // NaN too
		v.fail("access_log.sample", "must be from 0 to 1")
	}
	switch c.AccessLog.Path {
	case "":
		v.fail("access_log.path", "must be stdout or a file path")
	case "stderr":
		// Not a keyword: it would name a file "stderr" in the working
		// directory (found by review).
		v.fail("access_log.path", "stderr is a file name here: use stdout, or /dev/stderr for standard error")
	}

	if len(c.Pools) == 0 {
		v.fail("pools", "at least one pool is required")
	}
	for _, name := range c.PoolNames() {
		if name == "" {
			// No route can name it (routes[].pool is required), and its
			// series would take pool="", which stands for no route (found
			// by review).
			v.fail("pools."+name, "a pool needs a name")
			continue
		}
		if name == "<<" {
			// Quoted it is a name, but YAML's merge key wherever it is
			// written plain, as yaml.v3 writes it back: /admin/config
			// showed the pool's fields as pools (found by review).
			v.fail("pools."+name, "<< is YAML's merge key; choose another name")
			continue
		}
		if slices.ContainsFunc(strings.Split(name, "/"), func(seg string) bool { return seg == "." || seg == ".." }) {
			// The admin API names a pool in its path: a dot segment
			// there is resolved away, or refused when percent-encoded,
			// so such a pool could not be drained or weighted (found by
			// review).
			v.fail("pools."+name, "a pool name may not have a . or .. segment (between slashes): the admin API could not name it")
			continue
		}
		v.pool("pools."+name, c.Pools[name])
	}
	if len(c.Routes) == 0 {
		v.fail("routes", "at least one route is required")
	}
	seen := map[Match]int{}
	for i := range c.Routes {
		v.route(i, &c.Routes[i], seen)
	}
	v.stickyCookies(c)
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{File: v.c.File, Line: v.c.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) positive(path string, n int64) {
	if n <= 0 {
		v.fail(path, "must be > 0")
	}
}

// MinInterval is the shortest health check or DNS discovery interval
// accepted. Both loops run once per interval for as long as sluice runs: a
// 1ns interval would spin a core and flood every backend with probes (or the
// resolver with queries), so a typo such as "2" for "2s" is refused rather
// than obeyed.
const MinInterval = 50 * time.Millisecond

func (v *validator) minInterval(path string, d time.Duration) {
	if d < MinInterval {
		v.fail(path, "must be >= %v, got %v", MinInterval, d)
	}
}

func (v *validator) address(path, addr string) {
	if err := CheckAddress(addr); err != nil {
		v.fail(path, "%v", err)
	}
}

// stickyCookies refuses two pools with one affinity cookie name that
// one host can reach: a browser keeps one value per name and host (the
// cookie has no Domain), so each pool would overwrite the other's and
// neither kept its sessions (two pools with algorithm: sticky shared the
// default; found by review). Pools only other hosts reach may share a
// name. Run after the routes are checked (their hosts lower-cased).
func (v *validator) stickyCookies(c *Config) {
	hosts := map[string]*hostSet{} // pool -> the hosts of its routes
	for _, r := range c.Routes {
		hs := hosts[r.Pool]
		if hs == nil {
			hs = &hostSet{exact: map[string]bool{}, wild: map[string]bool{}}
			hosts[r.Pool] = hs
		}
		hs.add(r.Match.Host)
	}
	type holder struct{ pool, cookie string }
	var seen []holder
	for _, name := range c.PoolNames() {
		p := c.Pools[name]
		if name == "" || p == nil {
			continue
		}
		var cookie, field string
		switch {
		case p.Sticky != nil:
			cookie, field = p.Sticky.Cookie, ".sticky.cookie"
		case p.Algorithm == "sticky":
			cookie, field = DefaultStickyCookie, ".algorithm"
		default:
			continue
		}
		for _, h := range seen {
			if h.cookie == cookie && hosts[h.pool].overlaps(hosts[name]) {
				v.fail("pools."+name+field, "affinity cookie %s is pool %s's too, and one host reaches both: give each sticky pool its own sticky.cookie", cookie, h.pool)
				break
			}
		}
		seen = append(seen, holder{name, cookie})
	}
}

// hostSet is the route hosts of one pool: any (a route without host),
// exact names, and wildcard suffixes (".example.com" for *.example.com).
// Sets, so that the check costs a lookup per host, not a comparison per
// pair (found by review: 15k routes per pool took seconds).
type hostSet struct {
	any         bool
	exact, wild map[string]bool
}

func (s *hostSet) add(h string) {
	switch {
	case h == "":
		s.any = true
	case strings.HasPrefix(h, "*."):
		s.wild[h[1:]] = true
	default:
		s.exact[h] = true
	}
}

// overlaps reports whether a request for one host could be routed by a
// route of s and by one of o (a route without host takes any host's
// requests its host group leaves). Nil sets (pools no route names)
// overlap nothing.
func (s *hostSet) overlaps(o *hostSet) bool {
	if s == nil || o == nil {
		return false
	}
	if s.any || o.any {
		return true
	}
	for h := range s.exact {
		if o.exact[h] || o.wildMatches(h) {
			return true
		}
	}
	for h := range o.exact {
		if s.wildMatches(h) {
			return true
		}
	}
	// *.a.example.com and *.example.com share a.example.com's subdomains:
	// a wildcard of one side whose own name a wildcard of the other
	// matches, looked up label by label (a pairwise comparison was
	// quadratic; found by review).
	for w := range s.wild {
		if o.wild[w] || o.wildMatches(w[1:]) {
			return true
		}
	}
	for w := range o.wild {
		if s.wildMatches(w[1:]) {
			return true
		}
	}
	return false
}

// wildMatches reports whether one of s's wildcards matches host h.
func (s *hostSet) wildMatches(h string) bool {
	for i := strings.IndexByte(h, '.'); i >= 0; {
		if s.wild[h[i:]] {
			return true
		}
		next := strings.IndexByte(h[i+1:], '.')
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return false
}

// CheckAddress reports whether addr is a usable host:port.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port must be 1-65535, got %q", port)
	}
	if host == "" {
		return nil // all interfaces
	}
	// A rooted name (api.internal.) is a name: it skips the resolver's
	// search list, as the README advises (found by review: refused).
	if net.ParseIP(host) == nil && !validHostname(strings.TrimSuffix(host, ".")) {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

// checkDialAddress is CheckAddress for an address sluice connects to:
// an empty host, every interface to listen on, would have Go's dialer
// connect to this machine, and go upstream as the Host ":8080" (found by
// review).
func checkDialAddress(addr string) error {
	if err := CheckAddress(addr); err != nil {
		return err
	}
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		return fmt.Errorf("want host:port with a host, got %q", addr)
	}
	return nil
}

// canonicalAddress is a valid host:port in one spelling per socket: an IP
// in its canonical form, a name in lower case, the port without leading
// zeros (127.0.0.1:09001 is 127.0.0.1:9001).
func canonicalAddress(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else {
		host = strings.ToLower(strings.TrimSuffix(host, "."))
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// BackendAddress is a backend's address in the one spelling sluice uses
// for it everywhere (its identity in a pool, metrics, logs, the admin
// API, hashing): an IP literal in its canonical form, as discovery writes
// it (an IPv4-mapped IPv6 one as IPv4), and the port in decimal without
// leading zeros. A host name is put in lower case (DNS names are not case
// sensitive; the config refuses WEB:80 beside web:80 as the same socket),
// and keeps a trailing dot, which changes how it resolves. An address
// that is not host:port is returned as it is.
func BackendAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else {
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// SameSocket reports whether two valid listen addresses would bind the
// same port on a shared address: the same port, and the same host or one
// that is every interface.
func SameSocket(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(canonicalAddress(a))
	hb, pb, _ := net.SplitHostPort(canonicalAddress(b))
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return pa == pb && (ha == hb || wildcard(ha) || wildcard(hb) ||
		localhost(ha) && localhostAddress(hb) || localhostAddress(ha) && localhost(hb))
}

// localhost reports whether h is the name localhost, which the system
// resolves to 127.0.0.1 and ::1 (the config package resolves no names):
// localhost:8080 beside 127.0.0.1:8080 passed -check and failed to start
// (found by review). Two different literal addresses are two sockets,
// 127.0.0.1 and ::1 too.
func localhost(h string) bool { return strings.EqualFold(h, "localhost") }

// localhostAddress reports whether h is an address localhost resolves to.
func localhostAddress(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// checkProbePath reports whether p can be sent as the request target of a
// health check: it goes verbatim into the request line, so a space, a line
// break or any other control or non-ASCII byte would make every probe a
// malformed request and take the whole pool down.
func checkProbePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("must start with /, got %q", p)
	}
	if hasSpaceOrControl(p) {
		return fmt.Errorf("must be printable ASCII without spaces, got %q", p)
	}
	return nil
}

// checkHostHeader reports whether h is usable as the Host header of a health
// check: a host name, an IPv4 address or a bracketed IPv6 address, with an
// optional port.
func checkHostHeader(h string) error {
	bad := fmt.Errorf("want a host or host:port, got %q", h)
	if h == "" || hasSpaceOrControl(h) {
		return bad
	}
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad
		}
		host = h[:len(h)-len(port)-1] // keeps the brackets of an IPv6 address
		if hp == "" {
			return bad
		}
	}
	if ip6, ok := strings.CutPrefix(host, "["); ok {
		ip6, ok = strings.CutSuffix(ip6, "]")
		if !ok || !strings.Contains(ip6, ":") || net.ParseIP(ip6) == nil {
			return bad
		}
		return nil
	}
	if strings.Contains(host, ":") || net.ParseIP(host) == nil && !validHostname(strings.TrimSuffix(host, ".")) {
		return bad // an IPv6 address needs brackets in a Host header
	}
	return nil
}

// hasSpaceOrControl reports whether s holds a space, a control byte or
// anything outside ASCII (invalid UTF-8 included).
func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		// A name's last label is never all digits (RFC 3696 §2): this is
		// an IPv4 address that is not one, 999.1.1.1 or 10.0.0.256.
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) pool(path string, p *Pool) {
	if p == nil {
		v.fail(path, "empty pool")
		return
	}
	if !contains(algorithms, p.Algorithm) {
		v.fail(path+".algorithm", "unknown algorithm %q (want one of %s)", p.Algorithm, strings.Join(algorithms, ", "))
	}
	if _, err := ParseHashKey(p.HashKey); err != nil {
		v.fail(path+".hash_key", "%v", err)
	} else if p.HashKey == "" && (p.Algorithm == "ring_hash" || p.Algorithm == "maglev") {
		// Without a key every pick is random: no affinity, which is the
		// only reason to choose these (nginx's hash needs a key too).
		v.fail(path+".hash_key", "required for %s (source_ip, header:NAME, cookie:NAME, query:NAME, path or host)", p.Algorithm)
	} else if p.HashKey != "" && p.Algorithm != "ring_hash" && p.Algorithm != "maglev" {
		// Set beside another algorithm it did nothing, and the pool had
		// no affinity without a word (found by review).
		v.fail(path+".hash_key", "only ring_hash and maglev use a hash key (algorithm is %s)", p.Algorithm)
	}
	if p.Sticky != nil {
		switch c := strings.ToLower(p.Sticky.Cookie); {
		case !validToken(p.Sticky.Cookie):
			v.fail(path+".sticky.cookie", "must be a cookie name")
		case strings.HasPrefix(c, "__host-") || strings.HasPrefix(c, "__secure-"):
			// Browsers keep such a cookie only with Secure, which
			// sluice (no TLS) does not set: every answer would set a
			// cookie that is dropped, and no session would stick (found
			// by review).
			v.fail(path+".sticky.cookie", "%q: browsers keep __Host- and __Secure- cookies only with Secure, which sluice does not set; choose another name", p.Sticky.Cookie)
		}
	}
	if p.EWMAWindow <= 0 {
		v.fail(path+".ewma_window", "must be > 0")
	}
	if p.MaglevTableSize < 7 || p.MaglevTableSize > 5_000_011 || !isPrime(p.MaglevTableSize) {
		v.fail(path+".maglev_table_size", "must be a prime from 7 to 5000011")
	}
	if p.SlowStart < 0 {
		v.fail(path+".slow_start", "must be >= 0")
	}
	if len(p.Backends) == 0 && p.Discovery == nil {
		v.fail(path+".backends", "a pool needs backends or discovery")
	}
	addrs := map[string]int{}
	for i, b := range p.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", path, i)
		if b.Address == "" {
			v.fail(bp+".address", "required")
		} else if err := checkDialAddress(b.Address); err != nil {
			v.fail(bp+".address", "%v", err)
		} else if first, dup := addrs[canonicalAddress(b.Address)]; dup {
			v.fail(bp+".address", "duplicate backend %s (also backends[%d])", b.Address, first)
		} else {
			addrs[canonicalAddress(b.Address)] = i
		}
		if b.Weight < 0 {
			v.fail(bp+".weight", "must be >= 0")
		} else if b.Weight > 1_000_000 {
			v.fail(bp+".weight", "must be <= 1000000")
		}
	}
	if hc := p.HealthCheck; hc != nil {
		hp := path + ".health_check"
		if hc.Type != "http" && hc.Type != "tcp" {
			v.fail(hp+".type", "must be http or tcp")
		}
		if hc.Type == "http" {
			if err := checkProbePath(hc.Path); err != nil {
				v.fail(hp+".path", "%v", err)
			}
		}
		if hc.Host != "" {
			if err := checkHostHeader(hc.Host); err != nil {
				v.fail(hp+".host", "%v", err)
			}
		}
		if len(hc.ExpectStatus) == 0 {
			// The prober would pass 200-399 while /admin/config showed
			// [], which reads as no status passing (found by review).
			v.fail(hp+".expect_status", "want at least one status or range, such as 200-399")
		}
		v.minInterval(hp+".interval", hc.Interval)
		v.positive(hp+".timeout", int64(hc.Timeout))
		if hc.HealthyThreshold < 1 {
			v.fail(hp+".healthy_threshold", "must be >= 1")
		}
		if hc.UnhealthyThreshold < 1 {
			v.fail(hp+".unhealthy_threshold", "must be >= 1")
		}
	}
	if od := p.OutlierDetection; od != nil {
		op := path + ".outlier_detection"
		if od.ConsecutiveFailures < 1 {
			v.fail(op+".consecutive_failures", "must be >= 1")
		}
		v.positive(op+".base_ejection_time", int64(od.BaseEjectionTime))
		if od.MaxEjectionTime < od.BaseEjectionTime {
			v.fail(op+".max_ejection_time", "must be >= base_ejection_time")
		}
	}
	if d := p.Discovery; d != nil {
		dp := path + ".discovery"
		if d.DNS == nil {
			v.fail(dp+".dns", "required")
		} else {
			if d.DNS.Name == "" || !validHostname(strings.TrimSuffix(d.DNS.Name, ".")) {
				v.fail(dp+".dns.name", "want a DNS name, got %q", d.DNS.Name)
			}
			switch d.DNS.Type {
			case "A":
				if d.DNS.Port < 1 || d.DNS.Port > 65535 {
					v.fail(dp+".dns.port", "must be 1-65535 for type A")
				}
			case "SRV":
			default:
				v.fail(dp+".dns.type", "must be A or SRV")
			}
			v.minInterval(dp+".dns.interval", d.DNS.Interval)
			if d.DNS.Resolver != "" {
				if err := checkDialAddress(d.DNS.Resolver); err != nil {
					v.fail(dp+".dns.resolver", "%v", err)
				}
			}
		}
	}
}

func (v *validator) route(i int, r *Route, seen map[Match]int) {
	path := fmt.Sprintf("routes[%d]", i)
	r.Match.Host = strings.ToLower(r.Match.Host)
	if h := r.Match.Host; h != "" {
		name := strings.TrimPrefix(h, "*.")
		// An exact host may be an IPv4 address, which the router matches
		// as any Host (validHostname refuses an all-digit last label,
		// which took 10.0.0.1 away from routes; found by review).
		if ip := net.ParseIP(name); ip != nil && ip.To4() != nil && name == h {
			// ok
		} else if strings.Contains(name, "*") || !validHostname(name) {
			v.fail(path+".match.host", "want a host name or *.domain, got %q", h)
		}
	}
	if p := r.Match.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
		v.fail(path+".match.path_prefix", "must start with /")
	} else if err := checkPathPrefix(p); err != nil {
		v.fail(path+".match.path_prefix", "%v", err)
	}
	if r.Pool == "" {
		v.fail(path+".pool", "required")
	} else if _, ok := v.c.Pools[r.Pool]; !ok {
		v.fail(path+".pool", "unknown pool %q", r.Pool)
	}
	key := Match{Host: r.Match.Host, PathPrefix: r.Match.PathPrefix}
	if key.PathPrefix == "" {
		key.PathPrefix = "/"
	}
	if first, dup := seen[key]; dup {
		v.fail(path+".match", "same match as routes[%d]", first)
	} else {
		seen[key] = i
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func sortStrings(s []string) { sort.Strings(s) }

// sortErrors orders errors by line, keeping discovery order within a line.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}

// checkPathPrefix refuses a path_prefix that no request path can match:
// requests are routed on their decoded, normalised path (percent-escapes
// decoded, dot segments and repeated slashes removed, no query), so a
// prefix written with an escape, "//", a dot segment, '?' or '#' would
// never match the request it describes, and its traffic would go to a
// less specific route without a word (found by review). Write the prefix
// decoded ("/café/", not "/caf%C3%A9/").
// hasPercentEscape reports whether s holds a %-escape (% and two hex
// digits). A bare % is a character a decoded path can hold (/100%25off
// reads /100%off), so a prefix may have one (found by review).
func hasPercentEscape(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0 && i+2 < len(s); {
		if isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func checkPathPrefix(p string) error {
	switch {
	case strings.ContainsAny(p, "?#") || hasPercentEscape(p):
		return fmt.Errorf("%q: write it decoded, without %%-escapes, '?' or '#' (requests are matched on their decoded path)", p)
	case strings.Contains(p, "//"):
		return fmt.Errorf("%q: requests are matched with repeated slashes merged", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q: requests are matched with dot segments removed", p)
		}
	}
	return nil
}
