// Package admin serves sluice's control endpoints on the admin listener:
// liveness, readiness, metrics, the running config, pool state and the
// runtime API (drain, undrain, weight, reload). Nothing here is on the
// request path of proxied traffic.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"gopkg.in/yaml.v3"

	"sluice/config"
	"sluice/proxy"
)

// ConfigInfo describes the running config and the last reload attempt.
type ConfigInfo struct {
	Config     *config.Config
	Generation uint64
	LoadedAt   time.Time
	// LastError is the last failed reload's error (empty when the last
	// attempt succeeded), at LastErrorAt.
	LastError   string
	LastErrorAt time.Time
}

// ErrUnavailable is what a Reload func wraps when it could not try the
// reload at all (sluice is shutting down, or a step timed out): the admin
// API answers 503 for it and 400 for every other error, which means the
// new config was rejected.
var ErrUnavailable = errors.New("unavailable")

// Controller is the part of *proxy.Controller the admin endpoints use.
type Controller interface {
	Status(ctx context.Context) ([]proxy.PoolStatus, error)
	SetDrain(ctx context.Context, pool, addr string, drain bool) error
	SetWeight(ctx context.Context, pool, addr string, weight uint32) error
}

// Options are what the admin endpoints need from the rest of sluice.
type Options struct {
	Controller Controller
	// Ready reports readiness (config loaded, listeners up, not stopping).
	Ready func() bool
	// Reload re-reads the config file (POST /admin/reload). Its error
	// wraps ErrUnavailable when the reload could not be tried; any other
	// error means the config was rejected.
	Reload func(ctx context.Context) error
	// Config returns the running config and reload history.
	Config func() ConfigInfo
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
}

// ErrorHandler answers a request fasthttp's server could not read (too
// large, malformed, too slow) in the admin API's JSON error form.
func ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	proxy.LingerOnClose(ctx)
	code, msg := proxy.ClientErrorStatus(err)
	fail(ctx, code, msg)
}

// Handler returns the admin request handler.
func Handler(o Options) fasthttp.RequestHandler {
	var metrics fasthttp.RequestHandler
	if o.Metrics != nil {
		metrics = fasthttpadaptor.NewFastHTTPHandler(o.Metrics)
	}
	return func(ctx *fasthttp.RequestCtx) {
		if code, reason := proxy.Refusal(ctx); code != 0 {
			// What the proxy refuses as malformed (CL+TE, an HTTP/2.0
			// request line, a fragment, CONNECT) is refused here too,
			// before it can ask for a change.
			ctx.SetConnectionClose()
			fail(ctx, code, reason)
			return
		}
		path := string(ctx.Path())
		method := string(ctx.Method())
		if reason := crossSite(ctx, method); reason != "" {
			fail(ctx, 403, reason)
			return
		}
		switch {
		case (path == "/healthz" || path == "/readyz" || path == "/metrics") && !allow(ctx, method, "GET"):
			return
		case path == "/healthz":
			text(ctx, 200, "ok\n")
		case path == "/readyz":
			if o.Ready != nil && o.Ready() {
				text(ctx, 200, "ready\n")
			} else {
				text(ctx, 503, "not ready\n")
			}
		case path == "/metrics" && metrics != nil:
			metrics(ctx)
		case path == "/admin/config":
			if !allow(ctx, method, "GET") {
				return
			}
			serveConfig(ctx, o)
		case path == "/admin/reload":
			if !allow(ctx, method, "POST") {
				return
			}
			if o.Reload == nil {
				fail(ctx, 404, "reload is not available")
				return
			}
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := o.Reload(rctx); err != nil {
				if errors.Is(err, ErrUnavailable) || errors.Is(err, proxy.ErrStopped) || errors.Is(err, context.DeadlineExceeded) {
					fail(ctx, 503, "reload not done, running config kept: "+err.Error())
				} else {
					fail(ctx, 400, "reload rejected, running config kept: "+err.Error())
				}
				return
			}
			writeJSON(ctx, 200, map[string]any{"result": "reloaded", "generation": o.Config().Generation})
		case path == "/admin/pools" || path == "/admin/pools/":
			if !allow(ctx, method, "GET") {
				return
			}
			servePools(ctx, o)
		case strings.HasPrefix(path, "/admin/pools/"):
			serveBackendOp(ctx, o, method, rawRest(ctx, "/admin/pools/"))
		default:
			fail(ctx, 404, "no such endpoint")
		}
	}
}

func servePools(ctx *fasthttp.RequestCtx, o Options) {
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pools, err := o.Controller.Status(cctx)
	if err != nil {
		fail(ctx, 503, err.Error())
		return
	}
	if pools == nil {
		pools = []proxy.PoolStatus{}
	}
	writeJSON(ctx, 200, map[string]any{"pools": pools})
}

// rawRest is the request's path as sent, after prefix (which the decoded
// path starts with), so that a pool name holding a "/" can be asked for
// as %2F: the decoded path has it as a separator.
func rawRest(ctx *fasthttp.RequestCtx, prefix string) string {
	raw := string(ctx.URI().PathOriginal())
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if rest, ok := strings.CutPrefix(raw, prefix); ok {
		return rest
	}
	return strings.TrimPrefix(string(ctx.Path()), prefix)
}

// serveBackendOp handles {pool}/backends/{address}/drain|undrain|weight,
// each part percent-decoded on its own.
func serveBackendOp(ctx *fasthttp.RequestCtx, o Options, method, rest string) {
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		fail(ctx, 404, "want /admin/pools/{pool}/backends/{address}/{drain|undrain|weight}")
		return
	}
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			fail(ctx, 400, "bad percent-encoding in the path: "+err.Error())
			return
		}
		parts[i] = u
	}
	if parts[1] != "backends" || parts[0] == "" || parts[2] == "" {
		fail(ctx, 404, "want /admin/pools/{pool}/backends/{address}/{drain|undrain|weight} (a / in a pool name as %2F)")
		return
	}
	pool, addr, op := parts[0], parts[2], parts[3]
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	switch op {
	case "drain", "undrain":
		if !allow(ctx, method, "POST") {
			return
		}
		err = o.Controller.SetDrain(cctx, pool, addr, op == "drain")
	case "weight":
		if !allow(ctx, method, "PUT") {
			return
		}
		w, perr := parseWeight(ctx.PostBody())
		if perr != nil {
			fail(ctx, 400, perr.Error())
			return
		}
		err = o.Controller.SetWeight(cctx, pool, addr, w)
	default:
		fail(ctx, 404, "unknown operation "+strconv.Quote(op)+" (want drain, undrain or weight)")
		return
	}
	switch {
	case errors.Is(err, proxy.ErrNotFound):
		fail(ctx, 404, err.Error())
	case errors.Is(err, proxy.ErrStopped):
		fail(ctx, 503, err.Error())
	case err != nil:
		fail(ctx, 500, err.Error())
	default:
		// The spelling sluice uses everywhere, not the caller's.
		writeJSON(ctx, 200, map[string]any{"result": "ok", "pool": pool, "backend": config.BackendAddress(addr), "operation": op})
	}
}

// parseWeight accepts {"weight": N} or a bare number.
func parseWeight(body []byte) (uint32, error) {
	bad := errors.New(`want a body {"weight": N} or a number`)
	s := strings.TrimSpace(string(body))
	if strings.HasPrefix(s, "{") {
		// Token by token: exactly one key, spelled "weight", one number,
		// nothing after (encoding/json's struct decoding would take
		// "Weight", a repeated key or trailing data without a word).
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var toks []json.Token
		for range 4 {
			tok, err := dec.Token()
			if err != nil {
				return 0, bad
			}
			toks = append(toks, tok)
		}
		num, ok := toks[2].(json.Number)
		if toks[0] != json.Delim('{') || toks[1] != "weight" || !ok || toks[3] != json.Delim('}') {
			return 0, bad
		}
		if _, err := dec.Token(); err != io.EOF {
			return 0, bad
		}
		s = num.String()
	}
	// A plain decimal: no sign, no leading zeros, no exponent.
	outOfRange := errors.New("weight must be from 0 to 1000000")
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || (len(digits) > 1 && digits[0] == '0') || strings.Trim(digits, "0123456789") != "" {
		return 0, bad
	}
	if len(digits) != len(s) || len(digits) > 7 {
		return 0, outOfRange
	}
	n, _ := strconv.Atoi(digits)
	if n > 1_000_000 {
		return 0, outOfRange
	}
	return uint32(n), nil
}

// commentText keeps a text inside a YAML comment: every line break YAML
// knows becomes a space (CR too, found by review: an error naming a key
// with a CR in it left its comment, and the answer did not parse), and
// every other character YAML refuses, or a terminal would act on (ESC,
// DEL, C1), is written as its Go escape (found by review: an ESC in a
// quoted key made the whole answer unparsable).
func commentText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\u0085' || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		case r == '\t' || r != '\uFEFF' && unicode.IsGraphic(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

func serveConfig(ctx *fasthttp.RequestCtx, o Options) {
	info := o.Config()
	out, err := yaml.Marshal(info.Config)
	if err != nil {
		fail(ctx, 500, err.Error())
		return
	}
	var tree any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		fail(ctx, 500, err.Error())
		return
	}
	redact(tree)
	switch format := string(ctx.QueryArgs().Peek("format")); format {
	case "", "json":
	case "yaml":
		// The config as YAML, its history as comments above it.
		y, _ := yaml.Marshal(tree)
		head := fmt.Sprintf("# file: %s\n# generation: %d\n# loaded_at: %s\n", commentText(info.Config.File), info.Generation,
			info.LoadedAt.UTC().Format(time.RFC3339))
		if info.LastError != "" {
			head += fmt.Sprintf("# last_reload_error: %s (at %s)\n", commentText(info.LastError),
				info.LastErrorAt.UTC().Format(time.RFC3339))
		}
		ctx.SetContentType("application/yaml")
		ctx.SetBody(append([]byte(head), y...))
		return
	default:
		fail(ctx, 400, "format "+strconv.Quote(format)+": want json or yaml")
		return
	}
	resp := map[string]any{
		"file":       info.Config.File,
		"generation": info.Generation,
		"loaded_at":  info.LoadedAt,
		"config":     tree,
	}
	if info.LastError != "" {
		resp["last_reload_error"] = map[string]any{"error": info.LastError, "at": info.LastErrorAt}
	}
	writeJSON(ctx, 200, resp)
}

// redact blanks values whose key names a secret (a sticky cookie's
// secret today; any added later too), never a pool's name. An unset
// one stays empty: shown as REDACTED, it told the operator a secret was
// in force when the cookie was the unkeyed hash (found by review).
func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "password") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") ||
				strings.HasSuffix(lk, "key") && lk != "hash_key" {
				if val != "" && val != nil {
					t[k] = "REDACTED"
				}
				continue
			}
			if pools, ok := val.(map[string]any); ok && k == "pools" {
				// Its keys are pool names, which the operator chose: a
				// pool named turkey or auth-token is not a secret (found
				// by review: it was shown as "REDACTED").
				for _, pool := range pools {
					redact(pool)
				}
				continue
			}
			redact(val)
		}
	case []any:
		for _, e := range t {
			redact(e)
		}
	}
}

// crossSite returns why a request must be refused because a web page on
// another site, or one rebound to the admin address, sent it, or "" to
// let it through. A read (GET, HEAD, OPTIONS) is refused only when a
// browser sent it (Origin or Sec-Fetch-Site) under a DNS name: a rebound
// page reads same-origin.
//
// The rule: any method but GET, HEAD and OPTIONS (so POST /admin/reload,
// POST .../drain and .../undrain, PUT .../weight) is refused with 403 when
//   - it carries an Origin header whose host:port is not the request's Host
//     (the literal Origin "null" included), or
//   - it carries Sec-Fetch-Site: cross-site or same-site.
//
// Browsers send Origin on every cross-origin POST and PUT, no-cors mode
// included, and modern ones send Sec-Fetch-Site too; a form or fetch on
// some web page can therefore never drain a backend through an operator's
// browser. curl, scripts and monitoring send neither header and are not
// affected.
//
// This stops cross-site forms and fetches, and a rebound page that posts
// to the admin port under its own name from another port or site. A page
// rebound to the admin address on the admin port itself is same-origin
// (Origin and Host both name the attacker's domain), so a browser request
// (one with an Origin) must also address the admin API by IP literal or
// as localhost: DNS rebinding needs a DNS name.
func crossSite(ctx *fasthttp.RequestCtx, method string) string {
	switch method {
	case "GET", "HEAD", "OPTIONS":
		// A read from a browser (Sec-Fetch-Site or Origin set) must
		// name the admin API by IP or localhost too: a page rebound to
		// the admin address reads same-origin, and could send the
		// config, pools and metrics anywhere (found by review).
		h := &ctx.Request.Header
		if len(h.Peek("Sec-Fetch-Site")) == 0 && len(h.Peek("Origin")) == 0 {
			return ""
		}
		return byName((&url.URL{Host: string(ctx.Host())}).Hostname())
	}
	switch string(ctx.Request.Header.Peek("Sec-Fetch-Site")) {
	case "cross-site", "same-site":
		return "cross-site request refused (Sec-Fetch-Site)"
	}
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return ""
	}
	u, err := url.Parse(string(origin))
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, string(ctx.Host())) {
		return "cross-origin request refused: Origin " + strconv.Quote(string(origin)) + " is not this host"
	}
	return byName(u.Hostname())
}

// byName refuses a browser's request that names the admin API by a DNS
// name, which DNS rebinding needs; an IP literal or localhost is taken.
func byName(name string) string {
	if strings.EqualFold(name, "localhost") || net.ParseIP(name) != nil {
		return ""
	}
	return "browser request refused: address the admin API by IP or localhost, not " + strconv.Quote(name)
}

func allow(ctx *fasthttp.RequestCtx, method, want string) bool {
	if method == want || (want == "GET" && method == "HEAD") {
		return true
	}
	if want == "GET" {
		ctx.Response.Header.Set("Allow", "GET, HEAD") // every method it takes (RFC 9110 §10.2.1)
	} else {
		ctx.Response.Header.Set("Allow", want)
	}
	fail(ctx, 405, "method "+method+" not allowed, use "+want)
	return false
}

func text(ctx *fasthttp.RequestCtx, code int, body string) {
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(body)
}

func fail(ctx *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(ctx, code, map[string]string{"error": msg})
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	// Without HTML escaping: an error's ">= 0" read "\u003e= 0" (found by
	// a walkthrough); nothing here is put in a web page.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		code = 500
		b.Reset()
		b.WriteString(`{"error":"encoding failed"}` + "\n")
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(b.Bytes())
}
