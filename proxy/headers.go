package proxy

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
)

// Header names, as the canonical form fasthttp stores them in.
var (
	hdrXForwardedFor   = []byte("X-Forwarded-For")
	hdrXForwardedProto = []byte("X-Forwarded-Proto")
	hdrXForwardedHost  = []byte("X-Forwarded-Host")
	hdrXRequestID      = []byte("X-Request-Id")
	hdrSetCookie       = []byte("Set-Cookie")
	hdrRetryAfter      = []byte("Retry-After")
	valueHTTP          = []byte("http")
	valueOne           = []byte("1")
)

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1, plus the proxy-auth pair and the legacy
// Proxy-Connection); a proxy must not forward them in either direction.
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

// header is what the hop-by-hop stripping needs of fasthttp's request and
// response headers (both are pointers, so this boxes nothing).
type header interface {
	PeekAll(key string) [][]byte
	DelBytes(key []byte)
}

// stripHopByHop removes the headers named in Connection, then the fixed
// hop-by-hop set. Names listed in Connection go first: a client could
// otherwise smuggle X-Forwarded-For or an auth header past the proxy by
// naming it there (CVE-2021-33197). scratch is reused to hold the
// Connection value while headers are deleted; the grown buffer is returned.
func stripHopByHop(h header, scratch []byte) []byte {
	// Every Connection header counts: a second one must not smuggle names.
	scratch = scratch[:0]
	for _, v := range h.PeekAll("Connection") {
		scratch = append(scratch, v...)
		scratch = append(scratch, ',')
	}
	if len(scratch) > 0 {
		for tok := range bytes.SplitSeq(scratch, []byte(",")) {
			tok = bytes.TrimSpace(tok)
			if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) {
				continue
			}
			h.DelBytes(tok)
		}
	}
	for _, name := range hopByHop {
		h.DelBytes(name)
	}
	return scratch
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

// smuggled reports whether raw request headers carry both Content-Length
// and Transfer-Encoding. fasthttp lets chunked framing win, as RFC 9112
// allows, but an upstream or another hop may not: refuse the message.
func smuggled(raw []byte) bool {
	var cl, te bool
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		switch {
		case len(line) >= 15 && (line[0]|0x20) == 'c' && bytes.EqualFold(line[:15], []byte("content-length:")):
			cl = true
		case len(line) >= 18 && (line[0]|0x20) == 't' && bytes.EqualFold(line[:18], []byte("transfer-encoding:")):
			te = true
		}
	}
	return cl && te
}
