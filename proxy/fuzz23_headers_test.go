package proxy

// Fuzz targets for three parsers of client input: cookieValue (sticky
// sessions and hash_key: cookie:NAME), countFields (whether an announced
// trailer names a header field of the request) and checkTarget's path
// rules (routing against what a backend reads). Each has a reference
// written from the RFC, not from the code under test.

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzCookieValue checks cookieValue against a reference written from
// RFC 6265 §4.2.1 and §5.4: a Cookie header is cookie-pairs separated by
// ";" (SP after it; a server reading it leniently also takes HTAB, no
// space or empty pairs), a cookie-pair is token "=" cookie-value, and a
// cookie-value is *cookie-octet, optionally wrapped in one pair of DQUOTE
// (§4.1.1), which sluice's comment ("the raw value") and Go's net/http
// drop. README ("hash_key": "the value of cookie NAME"; "sticky") says no
// more, so the first pair of that exact name (names are case-sensitive,
// RFC 6265 §5.4 and browsers) across the Cookie lines in order is the
// one (RFC 6265 §5.4 step 2 puts the more specific cookie first). Where
// every line is such a cookie-string the answer must be the reference's
// exactly, and net/http's Request.Cookie must agree with the reference
// (which checks the reference). On any input: the result is a sub-slice
// of one line, holds no ';' and does not start or end with a DQUOTE; and
// where no byte is outside printable ASCII and HTAB, the first pair
// (SP/HTAB trimmed) starting with NAME= gives the value: exactly when it
// is a valid cookie-value, else something within it (a malformed value
// no browser sends may lose stray quotes).
func FuzzCookieValue(f *testing.F) {
	for _, s := range [][2]string{
		{"sluice_affinity=abc", "sluice_affinity"},
		{"a=1; sid=x; sid=y", "sid"},
		{"a=1;sid=x", "sid"},
		{"a=1;\tsid=x ;", "sid"},
		{`sid="quoted"`, "sid"},
		{`sid=""`, "sid"},
		{`sid="`, "sid"},
		{`sid=""x""`, "sid"},
		{`sid="x`, "sid"},
		{"sid=a=b", "sid"},
		{"sid=", "sid"},
		{"sid=; sid=x", "sid"},
		{"SID=x; sid=y", "sid"},
		{"xsid=1; sid=2", "sid"},
		{"sid =x; sid=y", "sid"},
		{"sid= x", "sid"},
		{"a=1\nsid=x\nsid=y", "sid"},
		{"\nsid=x", "sid"},
		{";;; ;sid=x;;", "sid"},
		{"a=1, sid=x", "sid"},
		{"sid", "sid"},
		{"=x; sid=y", "sid"},
		{"\u00a0sid=x", "sid"},
		{"sid=x\u00a0", "sid"},
		{"\vsid=x", "sid"},
		{"sid=x\r", "sid"},
		{"sid=" + strings.Repeat("v", 4096), "sid"},
		{strings.Repeat("a=b; ", 500) + "sid=z", "sid"},
	} {
		f.Add([]byte(s[0]), s[1])
	}
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		if !isToken([]byte(name)) || len(raw) > 1<<14 {
			return // config takes only tokens (config.validToken)
		}
		lines := bytes.Split(raw, []byte("\n"))
		if len(lines) > 16 {
			return
		}
		got := cookieValue(lines, []byte(name))

		// Invariants.
		if len(got) > 0 && !hdr23SubSlice(got, lines) {
			t.Fatalf("cookieValue(%q, %q) = %q is not a sub-slice of a line", raw, name, got)
		}
		if bytes.IndexByte(got, ';') >= 0 {
			t.Fatalf("cookieValue(%q, %q) = %q holds ';'", raw, name, got)
		}
		if len(got) > 0 && (got[0] == '"' || got[len(got)-1] == '"') {
			t.Fatalf("cookieValue(%q, %q) = %q keeps a DQUOTE at an end", raw, name, got)
		}

		strs := make([]string, len(lines))
		for i, l := range lines {
			strs[i] = string(l)
		}
		want, found, wellFormed := hdr23CookieRef(strs, name)
		if wellFormed {
			// An empty value counts as none (README "hash_key": a
			// request that lacks the key or has it empty).
			if string(got) != want {
				t.Fatalf("Cookie %q, name %q: got %q (nil %v), RFC 6265 reads %q (found %v)", strs, name, got, got == nil, want, found)
			}
			// Go's net/http agrees with the reference on well-formed input.
			r := http.Request{Header: http.Header{"Cookie": strs}}
			c, err := r.Cookie(name)
			if (err == nil) != found || err == nil && c.Value != want {
				t.Fatalf("reference disagrees with net/http on %q, name %q: %q/%v vs %v/%v", strs, name, want, found, c, err)
			}
			return
		}
		if !hdr23PrintableASCII(raw) {
			return
		}
		rv, ok := hdr23FirstNamed(strs, name)
		switch {
		case !ok:
			if len(got) > 0 {
				t.Fatalf("Cookie %q, name %q: got %q, no pair is named so", strs, name, got)
			}
		case hdr23CookieValueValid(rv):
			if string(got) != hdr23Unquote(rv) {
				t.Fatalf("Cookie %q, name %q: got %q, the first such pair's value is %q", strs, name, got, hdr23Unquote(rv))
			}
		default:
			if !strings.Contains(rv, string(got)) {
				t.Fatalf("Cookie %q, name %q: got %q (nil %v), not within the first such pair's value %q", strs, name, got, got == nil, rv)
			}
		}
	})
}

// hdr23CookieRef reads the Cookie lines as RFC 6265 cookie-strings: the
// first pair named name and its value (one DQUOTE pair removed), and
// whether every line is well formed.
func hdr23CookieRef(lines []string, name string) (val string, found, wellFormed bool) {
	wellFormed = true
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.Trim(part, " \t")
			if part == "" {
				continue
			}
			k, v, ok := strings.Cut(part, "=")
			if !ok || !isToken([]byte(k)) || !hdr23CookieValueValid(v) {
				wellFormed = false
				continue
			}
			if k == name && !found {
				val, found = hdr23Unquote(v), true
			}
		}
	}
	return val, found, wellFormed
}

// hdr23CookieValueValid: cookie-value = *cookie-octet / ( DQUOTE
// *cookie-octet DQUOTE ), RFC 6265 §4.1.1.
func hdr23CookieValueValid(v string) bool {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		// cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

func hdr23Unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// hdr23FirstNamed is the raw value of the first pair (split at ';',
// SP/HTAB trimmed) that starts with name "=".
func hdr23FirstNamed(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			if v, ok := strings.CutPrefix(strings.Trim(part, " \t"), name+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func hdr23PrintableASCII(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' {
			return false
		}
	}
	return true
}

// hdr23SubSlice reports whether s lies within one of lines' memory.
func hdr23SubSlice(s []byte, lines [][]byte) bool {
	for _, l := range lines {
		for off := 0; off+len(s) <= len(l); off++ {
			if &l[off] == &s[0] {
				return true
			}
		}
	}
	return false
}

// FuzzCountFields checks countFields against an RFC 9112 §5 field-line
// counter and against fasthttp's own parse. Reference: the header
// section is lines ending in LF (CRLF, or a bare LF that §2.2 lets a
// recipient accept) up to the empty line; a line starting with SP or HTAB
// is an obs-fold continuation of the field above (§5.2), never a field,
// and one before the first field is consumed unprocessed (§2.2); any
// other line is field-name ":" ..., the name a token with no whitespace
// before the colon (§5.1: such a message MUST be rejected, so the
// reference makes no claim there, nor where a bare CR or a line without
// a colon makes the section invalid). Names compare case-insensitively
// (RFC 9110 §5.1). Cross-check: where fasthttp parses
// "GET / HTTP/1.1\r\n" + block + "Host: h\r\n\r\n" (fasthttp wants a
// Host) and sluice would not refuse the
// names (scanRequest's hBadName), countFields over fasthttp's RawHeaders
// equals the number of lines fasthttp keeps for the name (PeekAll), for
// names it keeps line by line: dropTrailers compares the two, and a count
// above fasthttp's lets a trailer field through as a header.
func FuzzCountFields(f *testing.F) {
	for _, s := range [][2]string{
		{"X-Foo: a\r\n", "X-Foo"},
		{"x-foo: a\r\nX-FOO: b\r\n", "X-Foo"},
		{"X-A: a\r\n X-Foo: b\r\n", "X-Foo"},
		{"X-A: a\r\n\tX-Foo: b\r\nX-Foo: c\r\n", "X-Foo"},
		{" X-Foo: b\r\nX-A: a\r\n", "X-Foo"},
		{"X-A: a\r\n X-Foo: b\r\n  X-Foo: c\r\n", "X-Foo"},
		{"X-Foo: a\nX-Foo: b\n", "X-Foo"},
		{"X-Foo: a\rX-Foo: b\r\n", "X-Foo"},
		{"X-Foo : a\r\n", "X-Foo"},
		{"X-Foo:\r\n", "X-Foo"},
		{"X-Foo\r\n", "X-Foo"},
		{"X-Foo: a:b\r\nX-Bar: X-Foo: c\r\n", "X-Foo"},
		{"X-A: a\r\n\r\nX-Foo: b\r\n", "X-Foo"},
		{"X_Foo: a\r\n", "X-Foo"},
		{"X-Foo: a\r\nTrailer: X-Foo\r\n", "X-Foo"},
		{"Expect: 100-continue\r\nExpect: x\r\n", "Expect"},
		{strings.Repeat("X-Foo: a\r\n", 200), "X-Foo"},
		{"X-Foo: " + strings.Repeat("a", 5000) + "\r\n", "X-Foo"},
		{"", "X-Foo"},
	} {
		f.Add([]byte(s[0]), s[1], false)
		f.Add([]byte(s[0]), s[1], true)
	}
	f.Fuzz(func(t *testing.T, block []byte, name string, trailer bool) {
		if !isToken([]byte(name)) || len(block) > 1<<14 {
			return // names come from the Trailer field, a list of tokens
		}
		hdr23TrailerCheck(t, block, name, trailer)
		// The reference on the block itself, where it is one header
		// section (no empty line before its end).
		if n, ok := hdr23CountRef(block, name); ok && !hdr23InnerBlank(block) {
			if got := countFields(block, []byte(name)); got != n {
				t.Fatalf("countFields(%q, %q) = %d, RFC 9112 §5 counts %d", block, name, got, n)
			}
		}

		var h fasthttp.RequestHeader
		req := "GET / HTTP/1.1\r\n" + string(block) + "Host: h\r\n\r\n"
		if err := h.Read(bufio.NewReader(strings.NewReader(req))); err != nil {
			return
		}
		raw := h.RawHeaders()
		if scanRequest(raw)&hBadName != 0 {
			return // 400 before dropTrailers
		}
		got := countFields(raw, []byte(name))
		if n, ok := hdr23CountRef(raw, name); ok && got != n {
			t.Fatalf("block %q parsed; countFields(RawHeaders %q, %q) = %d, RFC 9112 §5 counts %d", block, raw, name, got, n)
		}
		if hdr23Special(name) {
			return
		}
		if fh := len(h.PeekAll(name)); fh != got {
			t.Fatalf("block %q: countFields(RawHeaders %q, %q) = %d, fasthttp holds %d lines (%q)", block, raw, name, got, fh, h.PeekAll(name))
		}
	})
}

// hdr23TrailerCheck is the contract countFields serves (README,
// Forwarding: trailer fields are dropped; "a request whose trailer
// repeats one of its header names gets 400"; RFC 9110 §6.5.1: a trailer
// field must not be merged into the header section): a chunked request
// whose head is block, announcing Trailer: name, with a trailer field of
// that name or none. Where the head holds a field of that name (the RFC
// 9112 §5 count) and the trailer repeats it, dropTrailers refuses it;
// otherwise it passes, and once stripHopByHop has deleted Trailer the
// name's fields are the head's own, as many, none from the trailer.
func hdr23TrailerCheck(t *testing.T, block []byte, name string, trailer bool) {
	const evil = "evil-hdr23-trailer"
	if hdr23Special(name) || bytes.Contains(bytes.ToLower(block), []byte(evil)) {
		return
	}
	req := "POST / HTTP/1.1\r\nHost: h\r\n" + string(block) + "Trailer: " + name + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
	if trailer {
		req += name + ": " + evil + "\r\n"
	}
	req += "\r\n"
	var r fasthttp.Request
	if err := r.Read(bufio.NewReader(strings.NewReader(req))); err != nil || r.MayContinue() {
		return // with Expect: 100-continue, Read leaves the body unread
	}
	raw := r.Header.RawHeaders()
	found := scanRequest(raw)
	if found&hTransferEncoding == 0 {
		return // not chunked (block ended the head): no dropTrailers
	}
	if found&(hBadName|hBadTE|hRepeatedSingleton) != 0 || found.smuggled() || bareLFEnd(raw) || tooManyTrailers(&r.Header) {
		return // refused before dropTrailers
	}
	n, ok := hdr23CountRef(raw, name)
	if !ok {
		return
	}
	_, passed := dropTrailers(&r.Header, raw, nil)
	if want := !(n > 0 && trailer); passed != want {
		t.Fatalf("request %q: dropTrailers passed %v, want %v (%d header fields %q, trailer field %v)", req, passed, want, n, name, trailer)
	}
	if !passed {
		return
	}
	stripHopByHop(&r.Header, found, nil)
	vals := r.Header.PeekAll(name)
	for _, v := range vals {
		if bytes.Contains(v, []byte(evil)) {
			t.Fatalf("request %q: the trailer field reached the headers: %s = %q", req, name, vals)
		}
	}
	if found&hConnectionNames != 0 || hdr23HopByHop(name) {
		return // stripHopByHop deletes the head's own too
	}
	if len(vals) != n {
		t.Fatalf("request %q: %d %s fields after dropTrailers and stripHopByHop (%q), the head has %d", req, len(vals), name, vals, n)
	}
}

// hdr23HopByHop: the names README (Forwarding) has removed always.
func hdr23HopByHop(name string) bool {
	for _, s := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate", "Expect"} {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

// hdr23CountRef counts the field lines named name (RFC 9112 §5, §5.2,
// §2.2); ok is false where the section is invalid, so that a recipient
// must refuse it and the count means nothing.
func hdr23CountRef(block []byte, name string) (n int, ok bool) {
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return n, true // end of the header section
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return 0, false // bare CR (§2.2)
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obs-fold (§5.2), or consumed before the first field (§2.2)
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !hdr23Token(line[:colon]) {
			return 0, false
		}
		if strings.EqualFold(string(line[:colon]), name) {
			n++
		}
	}
	return n, true
}

// hdr23Token: token = 1*tchar (RFC 9110 §5.6.2).
func hdr23Token(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// hdr23InnerBlank reports whether an empty line (the end of a header
// section) comes before the block's last line.
func hdr23InnerBlank(b []byte) bool {
	lines := bytes.Split(b, []byte("\n"))
	// lines[:len(lines)-1] each ended in LF; an empty one may only be
	// the last of them, with nothing after it.
	for i, l := range lines[:len(lines)-1] {
		if len(bytes.TrimSuffix(l, []byte("\r"))) == 0 {
			return i != len(lines)-2 || len(lines[len(lines)-1]) > 0
		}
	}
	return false
}

// hdr23Special: fields fasthttp's RequestHeader keeps apart from the
// line list (one value, or rebuilt), for which PeekAll does not give
// one entry per line.
func hdr23Special(name string) bool {
	for _, s := range []string{"Host", "Content-Type", "User-Agent", "Content-Length", "Cookie", "Connection", "Trailer", "Transfer-Encoding"} {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

// FuzzCheckPathEncodedDots is FuzzCheckPathAgreesWithRFC3986 with an
// alphabet of percent-encoded dots and slashes ("%2e", "%2E", "%2f",
// "%2F"), a double encoding ("%25"), bare '%', '?', an encoded '?'
// ("%3f"), ';' and an unreserved escape ("%41"). Oracle: README
// ("Routing"): paths are routed after %-decoding with ".." and "//"
// resolved, the target goes upstream as received, and "where the two
// could disagree, sluice refuses the request with 400". So for every
// origin-form target checkTarget lets through, fasthttp's path (what
// sluice routes on) must equal what a backend reads: RFC 3986 §5.2.4
// remove_dot_segments on the path as sent, then percent-decoding, then
// merged slashes (as nginx does); and equally for a backend that first
// decodes percent-encoded unreserved characters (§6.2.2.2, so "%2e" is
// a '.'; only '.' here, see hdr23IsDot). Conversely, a refusal must be one README lists: a %-encoded
// dot segment, a dot segment in a path with an encoded slash, a target
// starting with "//", an empty segment before a ".." segment.
func FuzzCheckPathEncodedDots(f *testing.F) {
	// Seeds are alphabet indexes (see tokens).
	for _, s := range [][]byte{
		{}, {1}, {1, 1}, {4}, {4, 4}, {5, 4}, {1, 4}, {2, 0, 4, 4, 0, 3},
		{2, 6, 1, 1, 0, 3}, {2, 0, 1, 6, 3}, {2, 0, 8, 12, 0, 3}, {2, 10, 0, 1, 1},
		{2, 0, 0, 1, 1, 0, 3}, {2, 13, 0, 1, 1}, {2, 14, 0, 1, 1, 0, 3}, {0, 2},
		{2, 0, 11, 4}, {2, 0, 9, 4}, {2, 15, 1, 1},
	} {
		f.Add(s)
	}
	tokens := []string{"/", ".", "a", "b", "%2e", "%2E", "%2f", "%2F", "%25", "%", "?", "%2", "%41", "%3f", ";", ".."}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64 {
			return
		}
		var b strings.Builder
		b.WriteByte('/')
		for _, c := range in {
			b.WriteString(tokens[int(c)%len(tokens)])
		}
		target := b.String()
		code, _ := checkTarget([]byte(target))
		path, _, _ := strings.Cut(target, "?")
		if code != 0 {
			if why := hdr23Refusable(target); why == "" {
				t.Errorf("target %q refused (%d), for none of README's reasons", target, code)
			}
			return
		}
		var u fasthttp.URI
		if err := u.Parse([]byte("h"), []byte(target)); err != nil {
			t.Fatalf("target %q passed checkTarget, fasthttp: %v", target, err)
		}
		routed := string(u.Path())
		plain := hdr23MergeSlashes(hdr23Decode(hdr23RemoveDots(path), nil))
		unres := hdr23MergeSlashes(hdr23Decode(hdr23RemoveDots(hdr23Decode(path, hdr23IsDot)), nil))
		if routed != plain || routed != unres {
			t.Errorf("target %q passed: routed as %q; an RFC 3986 backend reads %q (decoding unreserved first: %q)", target, routed, plain, unres)
		}
	})
}

// hdr23Refusable names the README reason (Routing, Error codes) a target
// may be refused for, "" if none.
func hdr23Refusable(target string) string {
	path, _, _ := strings.Cut(target, "?")
	if strings.HasPrefix(path, "//") {
		return "starts with //"
	}
	lower := strings.ToLower(path)
	// Segments as fasthttp sees them: at '/' and at an encoded slash.
	segs := strings.Split(strings.ReplaceAll(lower, "%2f", "/"), "/")
	for _, s := range segs {
		d := strings.ReplaceAll(s, "%2e", ".")
		if (d == "." || d == "..") && d != s {
			return "encoded dot segment"
		}
		if (d == "." || d == "..") && strings.Contains(lower, "%2f") {
			return "dot segment beside an encoded slash"
		}
	}
	if i := strings.Index(path, "//"); i >= 0 {
		for s := range strings.SplitSeq(path[i:], "/") {
			if s == ".." {
				return "empty segment before .."
			}
		}
	}
	return ""
}

// hdr23RemoveDots is RFC 3986 §5.2.4, with its input and output buffers.
func hdr23RemoveDots(in string) string {
	out := ""
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"): // A
			in = in[3:]
		case strings.HasPrefix(in, "./"): // A
			in = in[2:]
		case strings.HasPrefix(in, "/./"): // B
			in = "/" + in[3:]
		case in == "/.": // B
			in = "/"
		case strings.HasPrefix(in, "/../"): // C
			in = "/" + in[4:]
			out = out[:max(strings.LastIndexByte(out, '/'), 0)]
		case in == "/..": // C
			in = "/"
			out = out[:max(strings.LastIndexByte(out, '/'), 0)]
		case in == "." || in == "..": // D
			in = ""
		default: // E: the first segment, its '/' included, to the output
			i := strings.IndexByte(in[1:], '/') + 1
			if i == 0 {
				i = len(in)
			}
			out, in = out+in[:i], in[i:]
		}
	}
	return out
}

// hdr23Decode percent-decodes s (RFC 3986 §2.1): each '%' and two hex
// digits whose octet keep accepts (all if keep is nil); any other '%' is
// a character like any other (README: "/100%" matches "/100%25off").
func hdr23Decode(s string, keep func(byte) bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && hdr23Hex(s[i+1]) >= 0 && hdr23Hex(s[i+2]) >= 0 {
			c := byte(hdr23Hex(s[i+1])<<4 | hdr23Hex(s[i+2]))
			if keep == nil || keep(c) {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hdr23Hex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// hdr23IsDot: of the unreserved characters (RFC 3986 §2.3) that §6.2.2.2
// has a normaliser decode, the one that matters to dot segments. (Only
// it: decoding "%41" in "%2%41" would make a new escape, "%2A", of an
// invalid URI.)
func hdr23IsDot(c byte) bool { return c == '.' }

func hdr23MergeSlashes(s string) string {
	for strings.Contains(s, "//") {
		s = strings.ReplaceAll(s, "//", "/")
	}
	return s
}
