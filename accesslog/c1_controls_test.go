package accesslog

import (
	"encoding/json"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Found by review. What was wrong: the C1 control characters U+0080–U+009F reach the log raw (as
// their two UTF-8 bytes), though README (Access log) says "control
// characters are escaped" so that "a hostile value cannot ... put control
// characters on your terminal". They are control characters (Unicode
// category Cc, unicode.IsControl), and U+009B is CSI, U+009D OSC: xterm
// and other terminals that take 8-bit controls in UTF-8 act on them, so
// `GET /%C2%9B31m` (the path is logged percent-decoded) or a Host or
// X-Request-Id holding C2 9B colours or retitles the terminal of whoever
// runs `tail -f access.log`, as ESC [ would, which is escaped.
// appendString (encode.go:83) tests only c < 0x20 and DEL; every
// multi-byte rune but U+2028/U+2029 is copied as it is. Fix: in the
// multi-byte branch, escape r in 0x80–0x9F as \u00XX like the C0 ones.
func TestAccessLogEscapesC1Controls(t *testing.T) {
	for _, r := range []rune{'\u0085', '\u009b', '\u009d'} {
		in := "/x" + string(r) + "31m"
		out := appendString(nil, in)
		var got string
		if err := json.Unmarshal(out, &got); err != nil || got != in {
			t.Fatalf("appendString(%q) = %q, decodes to %q, %v", in, out, got, err)
		}
		for i := 0; i < len(out); {
			c, size := utf8.DecodeRune(out[i:])
			if unicode.IsControl(c) {
				t.Errorf("appendString(%q) = %q holds the raw control character %U; want it escaped (\\u%04x)", in, out, c, c)
				break
			}
			i += size
		}
	}
}
