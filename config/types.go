package config

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Percent is a share from 0 to 100, written 50% or 50.
type Percent float64

// UnmarshalYAML accepts "50%", "50" and 50.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParsePercent(n.Value)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePercent parses "50%" or "50" into a Percent in [0, 100].
func ParsePercent(s string) (Percent, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
	if err != nil || f < 0 || f > 100 || f != f {
		return 0, fmt.Errorf("want a percentage from 0%% to 100%%, got %q", s)
	}
	return Percent(f), nil
}

// CmpShare compares the share part/whole with p: -1, 0 or +1 as it is
// below, at or above it. p counts to a millionth of a percent, in
// integers, so that a share exactly at a percentage written in the file
// compares equal: in float64, 8.8 × 375 is 3300.0000000000005, and 33 of
// 375 backends healthy counted as below a panic_threshold of 8.8% (found
// by review). whole must be below 2^36 or so (int64).
func (p Percent) CmpShare(part, whole int) int {
	micro := int64(math.Round(float64(p) * 1e6))
	return cmp.Compare(int64(part)*100_000_000, micro*int64(whole))
}

// StatusRange is an inclusive range of HTTP status codes, written 200-399
// or as one code.
type StatusRange struct{ Lo, Hi int }

// UnmarshalYAML accepts 200, "200" and "200-399".
func (r *StatusRange) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseStatusRange(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes r as the file takes it ("200-399", or 200), so that
// /admin/config's running config loads back (found by review).
func (r StatusRange) MarshalYAML() (any, error) {
	if r.Lo == r.Hi {
		return r.Lo, nil
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi), nil
}

// MarshalJSON writes r as MarshalYAML does, quoted.
func (r StatusRange) MarshalJSON() ([]byte, error) {
	if r.Lo == r.Hi {
		return []byte(strconv.Itoa(r.Lo)), nil
	}
	return []byte(fmt.Sprintf(`"%d-%d"`, r.Lo, r.Hi)), nil
}

// ParseStatusRange parses "200" or "200-399".
func ParseStatusRange(s string) (StatusRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.Atoi(strings.TrimSpace(lo))
	h, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
		return StatusRange{}, fmt.Errorf("want a status code or range such as 200-399, got %q", s)
	}
	return StatusRange{Lo: l, Hi: h}, nil
}

// Contains reports whether code is in the range.
func (r StatusRange) Contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// HashKeyKind says which part of a request feeds a hash algorithm.
type HashKeyKind int

// The hash key kinds of hash_key.
const (
	HashNone HashKeyKind = iota
	HashSourceIP
	HashHeader
	HashCookie
	HashQuery
	HashPath
	HashHost
)

// HashKey is a parsed hash_key: a kind and, for header/cookie/query, a name.
type HashKey struct {
	Kind HashKeyKind
	Name string
}

// ParseHashKey parses source_ip, path, host, header:NAME, cookie:NAME or
// query:NAME. An empty string is HashNone.
func ParseHashKey(s string) (HashKey, error) {
	switch s {
	case "":
		return HashKey{}, nil
	case "source_ip":
		return HashKey{Kind: HashSourceIP}, nil
	case "path":
		return HashKey{Kind: HashPath}, nil
	case "host":
		return HashKey{Kind: HashHost}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return HashKey{}, fmt.Errorf("want source_ip, path, host, header:NAME, cookie:NAME or query:NAME, got %q", s)
	}
	var k HashKeyKind
	switch kind {
	case "header":
		k = HashHeader
	case "cookie":
		k = HashCookie
	case "query":
		k = HashQuery
	default:
		return HashKey{}, fmt.Errorf("unknown hash key kind %q (want header, cookie or query)", kind)
	}
	if !validToken(name) {
		return HashKey{}, fmt.Errorf("%s name %q must be a non-empty token", kind, name)
	}
	return HashKey{Kind: k, Name: name}, nil
}

// validToken reports whether s is an RFC 9110 token (header, cookie and
// query names are all restricted to it here).
func validToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !TokenChar(s[i]) {
			return false
		}
	}
	return true
}

// TokenChar reports whether c may be part of an RFC 9110 token
// (§5.6.2: a field name, a cookie or query name here).
func TokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
