package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// timeLayout is RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendEntry appends e as one JSON object and a newline. Hand-written
// rather than encoding/json or zerolog: it allocates nothing, and every
// value that came from the client goes through appendString.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","remote_addr":"`...)
	if e.Remote.IsValid() {
		// net.TCPAddr holds IPv4 clients in 16-byte form; write 192.0.2.7,
		// not ::ffff:192.0.2.7.
		b = netip.AddrPortFrom(e.Remote.Addr().Unmap(), e.Remote.Port()).AppendTo(b)
	}
	b = append(b, `","method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, int64(e.BytesIn), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, int64(e.BytesOut), 10)
	b = append(b, `,"duration":`...)
	b = appendSeconds(b, e.Duration)
	b = append(b, `,"upstream_addr":`...)
	b = appendString(b, e.UpstreamAddr)
	b = append(b, `,"upstream_duration":`...)
	b = appendSeconds(b, e.UpstreamDuration)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"upstream_error":`...)
	b = appendString(b, e.UpstreamError)
	b = append(b, `,"route":`...)
	b = appendString(b, e.Route)
	b = append(b, `,"pool":`...)
	b = appendString(b, e.Pool)
	b = append(b, `,"request_id":`...)
	b = appendString(b, e.RequestID)
	return append(b, "}\n"...)
}

// appendSeconds writes d in seconds with microsecond resolution, the unit
// Prometheus uses too, so log lines and histograms compare directly.
func appendSeconds(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
}

const hex = "0123456789abcdef"

// plain marks the bytes a JSON string may hold as they are: printable
// ASCII other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a quoted JSON string. Control characters and
// DEL are escaped (so a hostile path cannot forge lines or drive a
// terminal), each byte of invalid UTF-8 becomes U+FFFD (as encoding/json
// does), and U+2028/U+2029 are escaped for JavaScript consumers.
func appendString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		// Copy the run of bytes that need no escaping (usually all of
		// them) in one append.
		j := i
		for j < len(s) && plain[s[j]] {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default: // the other control characters and DEL
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		// At most 4 bytes: the conversion stays on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		case r >= 0x80 && r <= 0x9f:
			// The C1 controls: CSI (U+009B) and OSC (U+009D) drive a
			// terminal as ESC [ and ESC ] do (found by review).
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
