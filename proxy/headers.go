package proxy

import (
	"bytes"
	"iter"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// headerXRequestID is X-Request-Id for fasthttp's string-keyed lookups.
const headerXRequestID = "X-Request-Id"

// Header names, as the canonical form fasthttp stores them in.
var (
	hdrXForwardedFor    = []byte("X-Forwarded-For")
	hdrXForwardedProto  = []byte("X-Forwarded-Proto")
	hdrXForwardedHost   = []byte("X-Forwarded-Host")
	hdrXRequestID       = []byte(headerXRequestID)
	hdrSetCookie        = []byte("Set-Cookie")
	hdrRetryAfter       = []byte("Retry-After")
	hdrContentLength    = []byte("Content-Length")
	hdrTransferEncoding = []byte("Transfer-Encoding")
	hdrExpect           = []byte("Expect")
	hdrTrailer          = []byte("Trailer")
	valueHTTP           = []byte("http")
	valueChunked        = []byte("chunked")
	valueOne            = []byte("1")
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1, plus the proxy-auth pair and the legacy
// Proxy-Connection); a proxy must not forward them in either direction.
// hopByHop[i] is the header of bit 1<<i of a headerSet.
var hopByHop = [][]byte{
	[]byte("Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Connection"),
	[]byte("Te"),
	[]byte("Trailer"),
	[]byte("Transfer-Encoding"),
	[]byte("Upgrade"),
	[]byte("Proxy-Authorization"),
	[]byte("Proxy-Authenticate"),
}

// headerSet says which of the headers the proxy rewrites a message
// carries. Scanning for them once costs less than asking fasthttp to delete
// or look up each by name (a scan of every header per name): the common
// request carries none of them and skips that work.
type headerSet uint32

const (
	hConnection headerSet = 1 << iota // the hop-by-hop ones, in hopByHop's order
	hKeepAlive
	hProxyConnection
	hTE
	hTrailer
	hTransferEncoding
	hUpgrade
	hProxyAuthorization
	hProxyAuthenticate
	hContentLength
	hXForwardedFor
	hXForwardedProto
	hXForwardedHost
	hXRequestID
	hExpect
	// hForwardedAlias: a field named as X-Forwarded-For, -Proto or -Host
	// with underscores for hyphens (X_Forwarded_For), which CGI-style
	// backends read as the real one (both become HTTP_X_FORWARDED_FOR).
	hForwardedAlias
	// hConnectionNames: a Connection header names a header other than
	// close and keep-alive options.
	hConnectionNames

	// hAll stands for every header: the set to assume when no scan was
	// possible. It leaves out Content-Length so that it reads as not
	// smuggled.
	hAll = (hConnectionNames<<1 - 1) &^ hContentLength

	// Problems the scan found; never part of hAll.
	hBadName = hConnectionNames << 1 // a field name that is not a token
	hBadTE   = hConnectionNames << 2 // a Transfer-Encoding other than chunked
	// hRepeatedSingleton: a second Content-Type or User-Agent line.
	hRepeatedSingleton = hConnectionNames << 3

	// Fields that may come once, which fasthttp's parser keeps in one
	// slot each, a later line replacing an earlier one; never in hAll.
	hContentType = hConnectionNames << 4
	hUserAgent   = hConnectionNames << 5
	singletons   = hContentType | hUserAgent
)

// knownHeader is a header name and its bit.
type knownHeader struct {
	name []byte
	bit  headerSet
}

// knownHeaders maps names to their bit; names compare case-insensitively.
var knownHeaders = func() []knownHeader {
	k := []knownHeader{
		{[]byte("Content-Length"), hContentLength},
		{hdrXForwardedFor, hXForwardedFor},
		{hdrXForwardedProto, hXForwardedProto},
		{hdrXForwardedHost, hXForwardedHost},
		{hdrXRequestID, hXRequestID},
		{hdrExpect, hExpect},
		{[]byte("Content-Type"), hContentType},
		{[]byte("User-Agent"), hUserAgent},
	}
	for i, name := range hopByHop {
		k = append(k, knownHeader{name, 1 << i})
	}
	return k
}()

// knownByLength holds knownHeaders by the length of their names: a name
// is compared with the one or two known names of its length, not all
// fifteen (a browser's request has a dozen fields).
var knownByLength = func() (t [20][]knownHeader) {
	for _, k := range knownHeaders {
		t[len(k.name)] = append(t[len(k.name)], k)
	}
	return t
}()

// classifyHeader returns the bits of one header field.
func classifyHeader(name, value []byte) headerSet {
	if !isToken(name) {
		return hBadName
	}
	if len(name) >= len(knownByLength) {
		return 0
	}
	for _, k := range knownByLength[len(name)] {
		if !tokenIs(name, k.name) {
			if k.bit&forwardedBits != 0 && aliasIs(name, k.name) {
				return hForwardedAlias
			}
			continue
		}
		switch {
		case k.bit == hConnection && namesHeaders(value):
			return hConnection | hConnectionNames
		case k.bit == hTransferEncoding && !bytes.EqualFold(bytes.TrimSpace(value), valueChunked):
			// chunked is the only coding a request may carry here
			// (RFC 9112 §6.3: anything else cannot be framed).
			return hTransferEncoding | hBadTE
		}
		return k.bit
	}
	return 0
}

// forwardedBits are the forwarding headers sluice sets, whose names with
// underscores for hyphens it drops (hForwardedAlias).
const forwardedBits = hXForwardedFor | hXForwardedProto | hXForwardedHost

// aliasIs reports whether name is canonical, a name with hyphens, spelt
// with at least one underscore in place of a hyphen, in any case.
func aliasIs(name, canonical []byte) bool {
	if len(name) != len(canonical) {
		return false
	}
	under := false
	for i, c := range name {
		if c == '_' && canonical[i] == '-' {
			under = true
			continue
		}
		if c|0x20 != canonical[i]|0x20 {
			return false
		}
	}
	return under
}

// aliasOf is the bit of the forwarding header that name stands for with
// underscores for hyphens, 0 if none.
func aliasOf(name []byte) headerSet {
	for _, k := range knownHeaders {
		if k.bit&forwardedBits != 0 && aliasIs(name, k.name) {
			return k.bit
		}
	}
	return 0
}

// dropForwardedAliases deletes the fields of raw, a request's raw header
// block, that alias a forwarding header sluice sets (fw): a client's
// "X_Forwarded_For: 10.0.0.1" would otherwise reach a backend that reads
// header names CGI-style (underscores and hyphens alike, as older
// gunicorn, PHP and Apache setups do) as an X-Forwarded-For that sluice
// never vetted. nginx drops every name with an underscore by default
// (underscores_in_headers off); sluice drops only these (found by
// review). A header sluice passes as sent keeps its aliases too.
func dropForwardedAliases(h *fasthttp.RequestHeader, raw []byte, fw forwarding) {
	// Each deletion is a pass over every field: a name is deleted once,
	// with all its lines, however many lines repeat it (found by review:
	// thousands of alias lines in a large head took seconds of CPU).
	// Three names, each with its hyphens as underscores or not, make at
	// most 9 names to delete (in any case: deletion ignores it).
	var deleted [9][]byte
	n := 0
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch aliasOf(name) {
		case hXForwardedFor:
			ok = fw.xff != xffPass
		case hXForwardedProto:
			ok = fw.proto
		case hXForwardedHost:
			ok = fw.host
		default:
			ok = false
		}
		for _, d := range deleted[:n] {
			ok = ok && !bytes.EqualFold(d, name)
		}
		if ok {
			h.DelBytes(name)
			if n < len(deleted) {
				deleted[n] = name
				n++
			}
		}
	}
}

// tchar marks the bytes of a token (RFC 9110 §5.6.2), which a field name
// must be.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// namesHeaders reports whether a Connection value lists anything but the
// close and keep-alive options.
func namesHeaders(v []byte) bool {
	for tok := range bytes.SplitSeq(v, []byte(",")) {
		if !isConnectionOption(bytes.TrimSpace(tok)) {
			return true
		}
	}
	return false
}

// isConnectionOption reports whether a trimmed Connection token names no
// header: empty, close or keep-alive.
func isConnectionOption(tok []byte) bool {
	return len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive"))
}

// scanRequest classifies the raw header block of a parsed request, line by
// line. Empty raw means the request was not parsed from the wire: hAll.
func scanRequest(raw []byte) headerSet {
	if len(raw) == 0 {
		return hAll
	}
	var s, last headerSet
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			// An obs-fold continuation: fasthttp joins it to the value of
			// the header above, so a folded Connection value still counts.
			if last&hConnection != 0 && namesHeaders(line) {
				s |= hConnectionNames
			}
			continue
		}
		last = 0
		if name, value, ok := bytes.Cut(line, []byte(":")); ok {
			last = classifyHeader(name, value)
			if last&singletons&s != 0 {
				s |= hRepeatedSingleton
			}
			s |= last
		}
	}
	// Only a repeat of a singleton is news: one Content-Type is not a
	// header the proxy rewrites.
	return withTrailers(s &^ singletons)
}

// withTrailers widens s to every header when the message is chunked: its
// trailer section is not in the raw header block nor in All(), and fasthttp
// moves trailer fields into the headers when Trailer is deleted, so only
// the full rewrite is sure to see them. Content-Length keeps its scanned
// value for the smuggling check.
func withTrailers(s headerSet) headerSet {
	if s&hTransferEncoding != 0 {
		return s | hAll
	}
	return s
}

// scanResponse classifies the headers of a response read from upstream.
func scanResponse(h *fasthttp.ResponseHeader) headerSet {
	var s headerSet
	for k, v := range h.All() {
		s |= classifyHeader(k, v)
	}
	return withTrailers(s)
}

// smuggled reports whether a request carries both Content-Length and
// Transfer-Encoding. fasthttp lets chunked framing win, as RFC 9112
// allows, but an upstream or another hop may not: refuse the message.
func (s headerSet) smuggled() bool {
	return s&hContentLength != 0 && s&hTransferEncoding != 0
}

// header is what the hop-by-hop stripping needs of fasthttp's request and
// response headers (both are pointers, so this boxes nothing).
type header interface {
	PeekAll(key string) [][]byte
	DelBytes(key []byte)
}

// maxHopNames bounds the names a message may list in Connection and the
// fields it may announce in Trailer: each name costs a pass over the
// message's fields (DelBytes, hasField), so a head of many fields listing
// many names cost time quadratic in its size, seconds of CPU per request
// at a 256 KiB max_header_bytes (found by review). HAProxy and Envoy cap
// a head at about 100 fields; real messages list a few names.
const maxHopNames = 32

// tooManyNames reports whether h lists more than maxHopNames names in its
// Connection fields (found says it names any besides close and
// keep-alive).
func tooManyNames(h header, found headerSet) bool {
	if found&hConnectionNames == 0 {
		return false
	}
	n := 0
	for _, v := range h.PeekAll("Connection") {
		n += bytes.Count(v, []byte(",")) + 1
	}
	return n > maxHopNames
}

// tooManyTrailers reports whether h announces more than maxHopNames
// trailer fields.
func tooManyTrailers(h trailerHeader) bool {
	n := 0
	for range h.Trailers() {
		if n++; n > maxHopNames {
			return true
		}
	}
	return false
}

// stripHopByHop removes the headers named in Connection, then the fixed
// hop-by-hop ones, of those found says are there. Names listed in
// Connection go first: a client could otherwise smuggle X-Forwarded-For or
// an auth header past the proxy by naming it there (CVE-2021-33197).
// scratch is reused to hold the Connection value while headers are
// deleted; the grown buffer is returned.
func stripHopByHop(h header, found headerSet, scratch []byte) []byte {
	if found&hConnectionNames != 0 {
		// Every Connection header counts: a second one must not smuggle names.
		scratch = scratch[:0]
		for _, v := range h.PeekAll("Connection") {
			scratch = append(scratch, v...)
			scratch = append(scratch, ',')
		}
		for tok := range bytes.SplitSeq(scratch, []byte(",")) {
			if tok = bytes.TrimSpace(tok); !isConnectionOption(tok) {
				h.DelBytes(tok)
			}
		}
	}
	for i, name := range hopByHop {
		if found&(1<<i) != 0 {
			h.DelBytes(name)
		}
	}
	return scratch
}

// trailerHeader is what dropTrailers needs of fasthttp's request and
// response headers.
type trailerHeader interface {
	Trailers() iter.Seq[[]byte]
	DelBytes(key []byte)
	PeekAll(key string) [][]byte
}

// dropTrailers removes the trailer fields of a chunked message, as nginx
// does. fasthttp keeps them apart only while the Trailer header announces
// them and merges them into the headers when it is deleted (stripHopByHop
// deletes it): a field a client hid in the trailer, where a filter in
// front of sluice does not look, would reach the backend as a header (RFC
// 9110 §6.5.1 forbids the merge). raw is the message's raw header block,
// nil if unknown. A name announced that is also a header there is kept
// if no trailer field of that name came (fasthttp holds the header's own
// lines with the trailer's then, and deleting Trailer gives them back),
// and the message is refused (false) if one did: the two would merge.
// Without raw such a header goes too. Call it before stripHopByHop.
func dropTrailers(h trailerHeader, raw, scratch []byte) ([]byte, bool) {
	scratch = scratch[:0]
	for name := range h.Trailers() {
		if raw != nil {
			if n := countFields(raw, name); n > 0 {
				// Found by review: refused as a repeat even when the
				// trailer section was empty (Trailer only announces).
				if len(h.PeekAll(string(name))) > peekedFields(raw, name, n) {
					return scratch, false
				}
				continue
			}
		}
		scratch = append(scratch, name...)
		scratch = append(scratch, '\n')
	}
	for name := range bytes.SplitSeq(scratch, []byte("\n")) {
		if len(name) > 0 {
			h.DelBytes(name)
		}
	}
	return scratch, true
}

// peekedFields is how many of the n head fields named name fasthttp's
// PeekAll returns: all of them, but an empty User-Agent, which fasthttp
// keeps in storage of its own and leaves out (found by review: behind
// "User-Agent:" a trailer's User-Agent counted as the head's one, and
// went upstream as a header).
func peekedFields(raw, name []byte, n int) int {
	if !tokenIs(name, "User-Agent") {
		return n
	}
	shown := 0
	empty := false // the field being read so far has an empty value
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if empty && len(bytes.TrimSpace(line)) > 0 {
				empty = false
				shown++
			}
			continue
		}
		empty = false
		if f, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(f), name) {
			if len(bytes.TrimSpace(v)) > 0 {
				shown++
			} else {
				empty = true
			}
		}
	}
	return shown
}

// countFields is the number of fields named name in the raw header block.
// A line folded onto the one above (obs-fold) is part of that field's
// value, not a field (found by review: " X-Foo: b" under X-A counted as
// an X-Foo, and let a trailer X-Foo through as a header).
func countFields(raw, name []byte) int {
	n := 0
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			continue
		}
		if f, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(f), name) {
			n++
		}
	}
	return n
}

// appendIP writes ip in its textual form without allocating.
func appendIP(dst []byte, ip net.IP) []byte {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return append(dst, "unknown"...)
	}
	return addr.Unmap().AppendTo(dst)
}

const hexDigits = "0123456789abcdef"

// appendRequestID writes a new 128-bit random request id as 32 hex digits.
// It needs to be unique, not secret, so the runtime's fast per-thread
// generator is enough.
func appendRequestID(dst []byte) []byte {
	for range 2 {
		v := rand.Uint64()
		for i := 60; i >= 0; i -= 4 {
			dst = append(dst, hexDigits[(v>>uint(i))&0xf])
		}
	}
	return dst
}

// cookieValue returns the raw value of the named cookie from the request's
// Cookie headers. It reads the raw headers rather than fasthttp's parsed
// cookies: parsing them would make fasthttp re-serialise the Cookie header
// sent upstream (dropping quotes, merging headers).
func cookieValue(headers [][]byte, name []byte) []byte {
	for _, h := range headers {
		for len(h) > 0 {
			var pair []byte
			if i := bytes.IndexByte(h, ';'); i >= 0 {
				pair, h = h[:i], h[i+1:]
			} else {
				pair, h = h, nil
			}
			k, v, ok := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
			if ok && bytes.Equal(k, name) {
				return bytes.Trim(v, `"`)
			}
		}
	}
	return nil
}

// queryValue returns the raw value of the first name=value pair in a raw
// query string, without decoding and without touching fasthttp's parsed
// query args (parsing them would re-encode the URI sent upstream).
func queryValue(query, name []byte) []byte {
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		k, v, _ := bytes.Cut(pair, []byte("="))
		if bytes.Equal(k, name) {
			return v
		}
	}
	return nil
}
