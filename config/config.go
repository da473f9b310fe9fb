// Package config reads sluice's YAML file into plain structs, fills in
// defaults and validates them. It starts no goroutines, keeps no globals and
// does no I/O beyond reading the file it is given.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Config is one complete, validated sluice configuration.
type Config struct {
	Listen          string           `yaml:"listen"`
	ListenReusePort bool             `yaml:"listen_reuseport"`
	Admin           Admin            `yaml:"admin"`
	Routes          []Route          `yaml:"routes"`
	Pools           map[string]*Pool `yaml:"pools"`
	Timeouts        Timeouts         `yaml:"timeouts"`
	Limits          Limits           `yaml:"limits"`
	Retries         Retries          `yaml:"retries"`
	PreserveHost    bool             `yaml:"preserve_host"`
	Forwarding      Forwarding       `yaml:"forwarding"`
	ShutdownTimeout time.Duration    `yaml:"shutdown_timeout"`
	ShutdownDelay   time.Duration    `yaml:"shutdown_delay"`
	DrainTimeout    time.Duration    `yaml:"drain_timeout"`
	WatchConfig     bool             `yaml:"watch_config"`
	Log             Log              `yaml:"log"`
	AccessLog       AccessLog        `yaml:"access_log"`

	// File is the path the config was read from (for messages).
	File string `yaml:"-"`
	// Source is the raw file content, kept to report the running config.
	Source []byte `yaml:"-"`

	lines map[string]int
}

// Admin is the control listener: health, readiness, metrics, runtime API.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Route sends matching requests to a pool.
type Route struct {
	Match Match  `yaml:"match"`
	Pool  string `yaml:"pool"`
}

// Match selects requests by host and path prefix; both are optional.
type Match struct {
	// Host is an exact host name or a wildcard such as *.example.com.
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
}

// Pool is a set of interchangeable backends and how to balance over them.
type Pool struct {
	Algorithm        string            `yaml:"algorithm"`
	HashKey          string            `yaml:"hash_key"`
	Sticky           *Sticky           `yaml:"sticky"`
	Backends         []Backend         `yaml:"backends"`
	PreserveHost     *bool             `yaml:"preserve_host"`
	EWMAWindow       time.Duration     `yaml:"ewma_window"`
	MaglevTableSize  int               `yaml:"maglev_table_size"`
	HealthCheck      *HealthCheck      `yaml:"health_check"`
	OutlierDetection *OutlierDetection `yaml:"outlier_detection"`
	SlowStart        time.Duration     `yaml:"slow_start"`
	PanicThreshold   Percent           `yaml:"panic_threshold"`
	Discovery        *Discovery        `yaml:"discovery"`
}

// Backend is one statically configured upstream.
type Backend struct {
	Address string `yaml:"address"`
	// Weight is the share of traffic; 0 keeps the backend in the pool
	// without sending it new requests.
	Weight int `yaml:"weight"`
}

// Sticky turns on cookie-based session affinity for a pool.
type Sticky struct {
	Cookie string `yaml:"cookie"`
	// Secret, when set, keys the cookie value (HMAC) so that it cannot be
	// matched to a backend address by hashing candidate addresses.
	Secret string `yaml:"secret"`
}

// HealthCheck configures active probes for a pool.
type HealthCheck struct {
	Type               string        `yaml:"type"` // http or tcp
	Path               string        `yaml:"path"`
	Host               string        `yaml:"host"`
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	HealthyThreshold   int           `yaml:"healthy_threshold"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"`
	ExpectStatus       []StatusRange `yaml:"expect_status"`
}

// OutlierDetection configures passive ejection from real traffic.
type OutlierDetection struct {
	ConsecutiveFailures int           `yaml:"consecutive_failures"`
	BaseEjectionTime    time.Duration `yaml:"base_ejection_time"`
	MaxEjectionTime     time.Duration `yaml:"max_ejection_time"`
	MaxEjectionPercent  Percent       `yaml:"max_ejection_percent"`
}

// Discovery finds backends at run time.
type Discovery struct {
	DNS *DNSDiscovery `yaml:"dns"`
}

// DNSDiscovery re-resolves a name on an interval.
type DNSDiscovery struct {
	Name     string        `yaml:"name"`
	Port     int           `yaml:"port"`
	Type     string        `yaml:"type"` // A or SRV
	Interval time.Duration `yaml:"interval"`
	// Resolver is an optional DNS server address (host:port) to query
	// instead of the system's.
	Resolver string `yaml:"resolver"`
}

// SameLookup reports whether d and o ask the same question of the same
// server: the interval aside, and the port with SRV, where each record
// gives its own (found by review: a reload during a DNS outage that only
// changed an SRV pool's ignored port asked anew, and emptied the pool).
func (d DNSDiscovery) SameLookup(o DNSDiscovery) bool {
	d.Interval = o.Interval
	if d.Type == "SRV" && o.Type == "SRV" {
		d.Port = o.Port
	}
	return d == o
}

// Timeouts bound every blocking step of a request.
type Timeouts struct {
	Connect     time.Duration `yaml:"connect"`
	Response    time.Duration `yaml:"response"`
	ClientRead  time.Duration `yaml:"client_read"`
	ClientWrite time.Duration `yaml:"client_write"`
	Idle        time.Duration `yaml:"idle"`
	// UpstreamIdle is how long an idle upstream connection is kept; keep
	// it below the backends' own keep-alive timeout, or a request can be
	// sent on a connection the backend is closing.
	UpstreamIdle time.Duration `yaml:"upstream_idle"`
}

// Limits bound what a client may send.
type Limits struct {
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	MaxBodyBytes   int `yaml:"max_body_bytes"`
	// MaxResponseBytes caps an upstream response body (it is buffered
	// whole); larger ones get 502.
	MaxResponseBytes int `yaml:"max_response_bytes"`
	// MaxConnsPerBackend caps upstream connections to each backend.
	MaxConnsPerBackend int `yaml:"max_conns_per_backend"`
	// MaxClientConns caps the client connections served at once; one
	// more is answered 503 and closed.
	MaxClientConns int `yaml:"max_client_conns"`
}

// Retries is sluice's own retry policy (fasthttp's is turned off).
type Retries struct {
	// Attempts is the total tries per request, first included.
	Attempts int `yaml:"attempts"`
}

// Forwarding is which forwarding headers sluice sets on the requests it
// sends upstream. A header sluice does not set goes on as the client sent
// it, as with nginx and HAProxy when they are not told to set it.
type Forwarding struct {
	// XForwardedFor is append (the client's list, then the client),
	// replace (the client alone) or pass.
	XForwardedFor   string `yaml:"x_forwarded_for"`
	XForwardedProto bool   `yaml:"x_forwarded_proto"`
	XForwardedHost  bool   `yaml:"x_forwarded_host"`
	// RequestID keeps the client's X-Request-Id or sets a new one.
	RequestID bool `yaml:"request_id"`
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json, console or auto
}

// AccessLog configures the per-request log.
type AccessLog struct {
	Enabled bool    `yaml:"enabled"`
	Path    string  `yaml:"path"`
	Sample  float64 `yaml:"sample"`
}

// Defaults applied before the file is decoded over them.
func (c *Config) setDefaults() {
	c.Listen = "127.0.0.1:8080"
	c.Admin.Listen = "127.0.0.1:9901"
	c.Timeouts = Timeouts{
		Connect:     2 * time.Second,
		Response:    30 * time.Second,
		ClientRead:  30 * time.Second,
		ClientWrite: 30 * time.Second,
		Idle:        90 * time.Second,
		// Below the keep-alive of common app servers (gunicorn 2 s,
		// Node and uvicorn 5 s).
		UpstreamIdle: 2 * time.Second,
	}
	c.Limits = Limits{MaxHeaderBytes: 8 << 10, MaxBodyBytes: 8 << 20, MaxResponseBytes: 64 << 20, MaxConnsPerBackend: 1024,
		MaxClientConns: 256 << 10}
	c.Retries.Attempts = 2
	c.PreserveHost = true
	c.Forwarding = Forwarding{XForwardedFor: "append", XForwardedProto: true, XForwardedHost: true, RequestID: true}
	c.WatchConfig = true
	c.ShutdownTimeout = 30 * time.Second
	c.DrainTimeout = 30 * time.Second
	c.Log = Log{Level: "info", Format: "auto"}
	c.AccessLog = AccessLog{Path: "stdout", Sample: 1}
}

func (p *Pool) setDefaults() {
	p.Algorithm = "p2c"
	p.EWMAWindow = 10 * time.Second
	p.MaglevTableSize = 65537
}

func (b *Backend) setDefaults() { b.Weight = 1 }

func (s *Sticky) setDefaults() { s.Cookie = DefaultStickyCookie }

// DefaultStickyCookie is the affinity cookie of a pool that names none.
const DefaultStickyCookie = "sluice_affinity"

func (h *HealthCheck) setDefaults() {
	h.Type = "http"
	h.Path = "/healthz"
	h.Interval = 2 * time.Second
	h.Timeout = time.Second
	h.HealthyThreshold = 2
	h.UnhealthyThreshold = 3
	// The probe's own default, written out so that /admin/config shows
	// what is in force rather than [] (found by review).
	h.ExpectStatus = []StatusRange{{200, 399}}
}

func (o *OutlierDetection) setDefaults() {
	o.ConsecutiveFailures = 5
	o.BaseEjectionTime = 30 * time.Second
	o.MaxEjectionTime = 300 * time.Second
	o.MaxEjectionPercent = 50
}

func (d *DNSDiscovery) setDefaults() {
	d.Type = "A"
	d.Interval = 5 * time.Second
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// MaxFileBytes bounds a config file: far above any real one (a static
// list of 40,000 backends), and it keeps a file swapped for something
// endless (a link to /dev/zero) from taking all memory.
const MaxFileBytes = 4 << 20

// ErrNotConfigFile marks a path that cannot be a config file: not a
// regular file, or larger than MaxFileBytes. Unlike a file missing
// mid-replace, it will not come right by waiting.
var ErrNotConfigFile = errors.New("not a config file")

// ReadFile reads the config file at path. It opens without blocking and
// refuses anything but a regular file, so that a FIFO (whose open and
// read wait for a writer, holding a reload, and the shutdown that waits
// for it) or a device never hangs the process; and one over MaxFileBytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("config: %s: %w: %s", path, ErrNotConfigFile, fileKind(st.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s: %w: larger than %d MiB", path, ErrNotConfigFile, MaxFileBytes>>20)
	}
	return data, nil
}

// fileKind says what a file that is not a regular one is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}

// Parse decodes and validates data as if read from the named file. The
// error, when not nil, is an Errors listing every problem found.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{}
	c.setDefaults()
	c.File = name
	c.Source = data
	d := &decoder{file: name, lines: map[string]int{}, src: data}

	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Msg: "empty config file"}}
		}
		return nil, Errors{syntaxError(name, data, err)}
	}
	// A second document (after a stray ---) would be ignored silently,
	// and with it whatever was edited there.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Errors{syntaxError(name, data, err)}
		}
		if len(next.Content) > 0 && !(next.Content[0].Kind == yaml.ScalarNode && next.Content[0].Tag == "!!null") {
			return nil, Errors{{File: name, Line: next.Line, Msg: "a second YAML document (after ---): sluice reads one"}}
		}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	// The whole tree is counted first: the decoder does not walk what it
	// refuses (an unknown key's value, a key defined twice), and a file of
	// 200,000 unknown keys got an error for each, 89 MB of text (found by
	// review).
	if over := overNodes(root, maxNodes); over != nil {
		return nil, Errors{{File: name, Line: over.Line, Msg: "document too large or too deeply nested"}}
	}
	d.decode(root, reflect.ValueOf(c).Elem(), "", 0)
	c.lines = d.lines
	c.deriveDefaults()
	errs := d.errs
	if d.nodes <= maxNodes {
		// Past the node limit the rest of the document went undecoded:
		// validated, its empty list items each reported "required",
		// 22,961 lines for a 4 MiB file (found by review).
		errs = append(errs, c.validate()...)
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	return c, nil
}

// overNodes returns the node at which a walk of n's tree, aliases
// followed, passes limit nodes, or nil if it does not. The walk stops
// there, so an alias bomb costs no more than limit steps.
func overNodes(n *yaml.Node, limit int) *yaml.Node {
	count := 0
	var walk func(n *yaml.Node) *yaml.Node
	walk = func(n *yaml.Node) *yaml.Node {
		if count++; count > limit {
			return n
		}
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			return walk(n.Alias)
		}
		for _, c := range n.Content {
			if over := walk(c); over != nil {
				return over
			}
		}
		return nil
	}
	return walk(n)
}

// deriveDefaults sets the defaults that depend on other fields, where
// the file left them out: max_ejection_time is the larger of 300 s and
// base_ejection_time, as Envoy's is (found by review: base_ejection_time
// 10m alone was refused, for a max_ejection_time the file did not hold).
func (c *Config) deriveDefaults() {
	for name, p := range c.Pools {
		if p == nil || p.OutlierDetection == nil {
			continue
		}
		od := p.OutlierDetection
		if _, set := c.lines["pools."+name+".outlier_detection.max_ejection_time"]; !set {
			od.MaxEjectionTime = max(od.MaxEjectionTime, od.BaseEjectionTime)
		}
	}
}

// syntaxError turns yaml's "yaml: line 3: ..." into a FieldError, with
// the line syntaxErrorLine makes of it, or, for the errors yaml.v3 gives
// no line, the line unplacedLine finds in data.
func syntaxError(name string, data []byte, err error) FieldError {
	reported, msg := splitYAMLError(err)
	line := 0
	if reported == 0 {
		line = unplacedLine(data, msg)
	}
	if line == 0 {
		line = shiftedErrorLine(data, msg)
	}
	if line == 0 {
		line = syntaxErrorLine(reported, msg)
	}
	return FieldError{File: name, Line: line, Msg: "invalid YAML: " + withoutAnchorName(msg)}
}

// splitYAMLError splits yaml.v3's "yaml: line 3: msg" into the line as
// reported (0 when none) and the message.
func splitYAMLError(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if _, scanErr := fmt.Sscanf(num, "%d", &line); scanErr == nil {
				return line, tail
			}
		}
	}
	return 0, msg
}

// shiftedErrorLine places a syntax error in a quoted scalar by parsing
// data again one line lower: yaml.v3 takes a problem's context mark on
// line 0 for no context and names the point where it gave up instead (an
// unclosed quote on the first line was named after the file's last line,
// found by review). One line lower, the mark is kept; the line it names,
// less one, is the error's. Collections are left out: the top one starts
// on line 0, and its errors, as a flow collection's, are better named
// where they show (TestSyntaxLineFlow) than at its start. 0 if msg is
// none of those, or the second parse fails otherwise.
func shiftedErrorLine(data []byte, msg string) int {
	if !slices.ContainsFunc(constructProblems, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		return 0
	}
	bom := 0
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		bom = len("\ufeff")
	}
	shifted := make([]byte, 0, len(data)+1)
	shifted = append(append(append(shifted, data[:bom]...), '\n'), data[bom:]...)
	dec := yaml.NewDecoder(bytes.NewReader(shifted))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == nil {
			continue
		}
		line, tail := splitYAMLError(err)
		if line < 1 || tail != msg {
			return 0
		}
		return max(syntaxErrorLine(line, msg)-1, 0)
	}
}

// withoutAnchorName leaves the name out of yaml.v3's "unknown anchor 'X'
// referenced": an unquoted secret starting with "*" is read as an alias,
// and the error, kept in last_reload_error and logged, showed it (found
// by review). The line places it.
func withoutAnchorName(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		if _, tail, ok := strings.Cut(rest, "'"); ok {
			return "unknown anchor" + tail + " (quote a value that starts with *)"
		}
	}
	return msg
}

// unplacedLine finds the line of a yaml.v3 error that carries none (its
// reader's byte errors, its composer's unknown anchor), which was named
// line 1 (found by review): the first byte yaml.v3 refuses (invalid UTF-8
// or a character outside what YAML allows), or the first use of the
// unknown anchor outside a comment. 0 when it cannot tell.
func unplacedLine(data []byte, msg string) int {
	at := -1
	switch {
	case strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters") || strings.Contains(msg, "Unicode"):
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 || !yamlPrintable(r) {
				at = i
				break
			}
			i += size
		}
	case strings.HasPrefix(msg, "unknown anchor '"):
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "unknown anchor '"), "'")
		at = aliasUse(data, name)
	}
	if at < 0 {
		return 0
	}
	return bytes.Count(data[:at], []byte("\n")) + 1 + bytes.Count(data[:at], []byte("\r")) - bytes.Count(data[:at], []byte("\r\n"))
}

// yamlPrintable reports whether YAML allows r in a stream (YAML 1.2
// c-printable, the set yaml.v3's reader checks, with the byte order mark).
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// aliasUse is the offset of the first "*name" in data that is an alias:
// not in a comment, after the start of a line, a space or a flow
// indicator, and ending where a name ends (yaml.v3's anchor names are
// letters, digits, '_' and '-'); -1 if none.
func aliasUse(data []byte, name string) int {
	pat := []byte("*" + name)
	for off := 0; ; {
		i := bytes.Index(data[off:], pat)
		if i < 0 {
			return -1
		}
		i += off
		off = i + 1
		lineStart := bytes.LastIndexAny(data[:i], "\r\n") + 1
		if commentBefore(data[lineStart:i]) {
			continue
		}
		if i > lineStart && !strings.ContainsRune(" \t[{,:-", rune(data[i-1])) {
			continue
		}
		if end := i + len(pat); end < len(data) && isAnchorNameByte(data[end]) {
			continue
		}
		return i
	}
}

// commentBefore reports whether a '#' that starts a comment comes in
// line (up to the alias), outside quotes, roughly as YAML sees one: at
// the start or after white space.
func commentBefore(line []byte) bool {
	var quote byte
	for k, c := range line {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (k == 0 || line[k-1] == ' ' || line[k-1] == '\t'):
			return true
		}
	}
	return false
}

func isAnchorNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// parserProblems start the messages of yaml.v3's parser errors
// (parserc.go); its other syntax errors are the scanner's, some of which
// also start "did not find expected " (a wildcard host left unquoted:
// "... alphabetic or numeric character"), so each is named in full
// (found by review: those were named one line late).
var parserProblems = []string{
	"did not find expected <stream-start>", "did not find expected <document start>",
	"did not find expected node content", "did not find expected '-' indicator",
	"did not find expected key", "did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"found duplicate %", "found incompatible YAML document", "found undefined tag handle",
}

// constructProblems begin yaml.v3's messages for problems whose context
// mark is where the quoted scalar they are in begins.
var constructProblems = []string{
	"found unexpected end of stream",
	"found unexpected document indicator", "found unknown escape character",
	"did not find expected hexdecimal number", "found invalid Unicode character escape code",
}

// syntaxErrorLine is the 1-based line of a yaml.v3 syntax error it
// reported at line reported with message msg. yaml.v3 counts lines from
// 0 and adds 1 for scanner errors only, and leaves out a line 0: a parser
// error was named one line above the mark it meant (found by review),
// and an error on the first line had no line. The mark is the problem's,
// or the start of the construct the problem is in (a key indented wrong
// in a list is named at the list's first item): no later line is claimed
// than yaml.v3 can vouch for.
func syntaxErrorLine(reported int, msg string) int {
	if reported == 0 {
		return 1
	}
	for _, p := range parserProblems {
		if strings.HasPrefix(msg, p) {
			return reported + 1
		}
	}
	return reported
}

// Line returns the line of the field at path, or of its nearest parent.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// FirstLine is Line of the first of paths placed in the file, 0 if none
// is: an error about a field left at its default is placed at the line
// of the field it clashes with.
func (c *Config) FirstLine(paths ...string) int {
	for _, p := range paths {
		if l := c.Line(p); l > 0 {
			return l
		}
	}
	return 0
}

// PoolNames returns the pool names in sorted order.
func (c *Config) PoolNames() []string {
	names := make([]string, 0, len(c.Pools))
	for n := range c.Pools {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}
