package proxy

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/valyala/fasthttp"
)

// A backend's usual answer has a plain head: an HTTP/1.1 status line, a
// few well-formed fields, a Content-Length. readPlainHead reads such a
// head into fasthttp's ResponseHeader itself, and leaves out the
// hop-by-hop fields as it goes, where fasthttp's parser would check every
// byte of it one at a time and the handler would then look at every field
// again (scanResponse) to find what to strip: together those were 6% of
// the proxy's CPU time in scenario a (pprof; see README, Performance).
// Anything else is left to fasthttp's parser, and the handler's scan.

// readPlainHead reads head, a final response head that ends in CRLF
// CRLF, into h, as the front end passes it on: h.Read followed by the
// handler's stripping of hop-by-hop fields (stripHopByHop) would give the
// same answer (FuzzReadPlainHead). It reports false, and leaves h for
// fasthttp's parser to read afresh, when the head is not plain:
//
//   - a status line other than "HTTP/1.1 " with a code from 200 to 599
//     but 204 and 304 (those have no body), then a reason of visible
//     bytes, spaces and tabs;
//   - a field line that does not start with a token and a colon (a space
//     before the colon, a folded line), or whose value holds a control
//     byte but tab;
//   - no Content-Length, a second one, or one that is not the plain
//     decimal fasthttp would write back (leading zeros);
//   - a Transfer-Encoding or Trailer field, or a Connection field that
//     names other fields: the handler's general path handles those.
//
// Date is dropped: the front end writes its own (fasthttp's server writes
// a Date field in the response header only when NoDefaultDate is set,
// which sluice does not set, and which fasthttp gives no way to read;
// TestPlainHeadEndToEnd fails if the front end sets it). h's
// NoDefaultContentType and DisableNormalizing are kept.
func readPlainHead(h *fasthttp.ResponseHeader, head []byte) bool {
	line, rest, ok := cutLine(head)
	if !ok || len(line) < len("HTTP/1.1 200") || string(line[:len("HTTP/1.1 ")]) != "HTTP/1.1 " {
		return false
	}
	code, reason := line[len("HTTP/1.1 "):len("HTTP/1.1 200")], line[len("HTTP/1.1 200"):]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) {
		return false
	}
	status := int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if status < 200 || status > 599 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified {
		return false
	}
	if len(reason) > 0 && (reason[0] != ' ' || hasControl(reason)) {
		return false
	}
	// h.Reset clears two settings h.Read keeps; they are put back.
	// (It clears NoDefaultDate too, which cannot be read: see above.)
	noDefaultContentType := noDefaultContentType(h)
	keepCase := h.DisableNormalizing()
	h.Reset()
	h.SetNoDefaultContentType(noDefaultContentType)
	if keepCase {
		h.DisableNormalizing()
	}
	h.SetStatusCode(status)
	if len(reason) > 1 {
		h.SetStatusMessage(reason[1:])
	}
	// One pass over the fields, writing h as it goes: a head found not
	// plain halfway is read afresh by fasthttp's parser, which resets h.
	length := -1
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := cutField(line)
		if !ok {
			return false
		}
		switch plainFieldOf(name, value) {
		case fieldOther:
			h.AddBytesKV(name, value)
		case fieldNotPlain:
			return false
		case fieldContentLength:
			n, ok := plainDecimal(value)
			if !ok || length >= 0 {
				return false
			}
			length = n
		case fieldContentType:
			h.SetContentTypeBytes(value)
		case fieldContentEncoding:
			h.SetContentEncodingBytes(value)
		case fieldServer:
			h.SetServerBytes(value)
		case fieldConnectionClose:
			// For the upstream client, which then closes its connection;
			// the handler resets it for the client's.
			h.SetConnectionClose()
		}
		// fieldHopByHop and fieldDate are dropped.
	}
	if length < 0 {
		return false
	}
	h.SetContentLength(length)
	return true
}

// noDefaultContentType reports h's NoDefaultContentType, which fasthttp
// only lets be set: with no Content-Type, h reports a default one unless
// it is set. Clears h's Content-Type.
func noDefaultContentType(h *fasthttp.ResponseHeader) bool {
	h.SetContentTypeBytes(nil)
	return len(h.ContentType()) == 0
}

// plainField is what readPlainHead does with a field.
type plainField uint8

const (
	fieldOther plainField = iota // added as it is
	fieldNotPlain
	fieldContentLength
	fieldContentType
	fieldContentEncoding
	fieldServer
	fieldDate
	fieldConnectionClose // Connection: close, perhaps with keep-alive
	fieldHopByHop        // dropped, as stripHopByHop would drop it
)

// plainFieldOf classifies a field of a plain head by its name (any case;
// a token) and, for Connection, its value. One switch on the name's
// length, then at most a few comparisons.
func plainFieldOf(name, value []byte) plainField {
	switch len(name) {
	case 2:
		if tokenIs(name, "TE") {
			return fieldHopByHop
		}
	case 4:
		if tokenIs(name, "Date") {
			return fieldDate
		}
	case 6:
		if tokenIs(name, "Server") {
			return fieldServer
		}
	case 7:
		switch {
		case tokenIs(name, "Trailer"):
			return fieldNotPlain
		case tokenIs(name, "Upgrade"):
			return fieldHopByHop
		}
	case 10:
		switch {
		case tokenIs(name, "Connection"):
			return connectionField(value)
		case tokenIs(name, "Keep-Alive"):
			return fieldHopByHop
		}
	case 12:
		if tokenIs(name, "Content-Type") {
			return fieldContentType
		}
	case 14:
		if tokenIs(name, "Content-Length") {
			return fieldContentLength
		}
	case 16:
		switch {
		case tokenIs(name, "Content-Encoding"):
			return fieldContentEncoding
		case tokenIs(name, "Proxy-Connection"):
			return fieldHopByHop
		}
	case 17:
		if tokenIs(name, "Transfer-Encoding") {
			return fieldNotPlain
		}
	case 18:
		if tokenIs(name, "Proxy-Authenticate") {
			return fieldHopByHop
		}
	case 19:
		if tokenIs(name, "Proxy-Authorization") {
			return fieldHopByHop
		}
	}
	return fieldOther
}

// connectionField classifies a Connection field's value: plain when it
// lists only close and keep-alive options.
func connectionField(value []byte) plainField {
	switch {
	case tokenIs(value, "keep-alive"):
		return fieldHopByHop
	case tokenIs(value, "close"):
		return fieldConnectionClose
	}
	close := false
	for tok := range bytes.SplitSeq(value, []byte(",")) {
		// Spaces and tabs only, as fasthttp's parser trims a token:
		// bytes.TrimSpace would also take Unicode spaces.
		tok = bytes.Trim(tok, " \t")
		switch {
		case bytes.EqualFold(tok, []byte("close")):
			close = true
		case !isConnectionOption(tok):
			return fieldNotPlain
		}
	}
	if close {
		return fieldConnectionClose
	}
	return fieldHopByHop
}

// tokenIs reports whether name, a token, is s, a name of letters and
// dashes, in any case. Folding case by setting bit 0x20 is exact here: no
// other byte of a token becomes a letter or a dash that way.
func tokenIs[T string | []byte](name []byte, s T) bool {
	if len(name) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if name[i]|0x20 != s[i]|0x20 {
			return false
		}
	}
	return true
}

// cutLine cuts the CRLF-ended line at the start of b: the line without
// its CRLF and what follows it; ok is false when b holds no whole line
// or the line has a CR before its end.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// cutField splits a field line into its name, a token before the colon,
// and its value without the spaces and tabs around it; ok is false when
// the line is not such a field or the value holds a control byte but tab.
func cutField(line []byte) (name, value []byte, ok bool) {
	n := 0
	for n < len(line) && tchar[line[n]] {
		n++
	}
	if n == 0 || n == len(line) || line[n] != ':' {
		return nil, nil, false
	}
	value = line[n+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	if hasControl(value) {
		return nil, nil, false
	}
	return line[:n], value, true
}

// hasControl reports whether b holds a control byte (0x00–0x1f or 0x7f)
// other than tab. Eight bytes at a time: a word with no byte below 0x20
// and none equal to 0x7f is passed at once; a word with a tab in it is
// looked at byte by byte.
func hasControl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		del := x ^ ones*0x7f
		// A byte below n shows as a high bit in (x - ones*n) &^ x & highs
		// (exact in whether any is, for n up to 0x80).
		if (x-ones*0x20)&^x&highs|(del-ones)&^del&highs != 0 {
			break
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// plainDecimal reads b as a Content-Length fasthttp would write back the
// same: digits without a leading zero (but "0"), at most 15 of them, or 9
// where an int has 32 bits (more could wrap around to a small length, and
// the rest of the body be read as the next response on the connection).
func plainDecimal(b []byte) (int, bool) {
	maxDigits := 15
	if strconv.IntSize == 32 {
		maxDigits = 9
	}
	if len(b) == 0 || len(b) > maxDigits || b[0] == '0' && len(b) > 1 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
