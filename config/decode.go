package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the work of decoding one document, so alias tricks
// ("billion laughs") cannot make the decoder run away. Keys count (see
// overNodes): a backend in flow style, {address: x}, is three nodes.
const maxNodes = 300_000

// defaulter is implemented by structs that fill in their defaults before
// their YAML is decoded over them, so an explicit zero stays zero.
type defaulter interface{ setDefaults() }

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// decoder walks the YAML node tree and the target value together. Doing the
// walk ourselves, rather than yaml's Decode, lets us report every error at
// once with its line and field path, and remember each field's line for
// the validation that follows.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]int
	nodes int
	// aliasLine is the line of the alias (*name) being decoded, 0 outside
	// one: the fields under an alias are placed at the alias, the use
	// that validation's complaints (a duplicate) are about, not at the
	// anchor it copies (found by review). Value errors stay at the anchor.
	aliasLine int
	// src is the document's text; lineStarts, built from it when first
	// needed, is where each of its lines begins (see bareTag).
	src        []byte
	lineStarts []int
	// at is the last place bareTag found (line, column, offset): nodes
	// come in document order, so the next on that line is found from
	// there, not from the line's start (a long flow line of many nodes
	// would take time quadratic in its length).
	atLine, atCol, atOff int
}

// bareTag reports whether n is written with YAML's non-specific tag "!"
// (or "!<!>"), which yaml.v3 drops without a trace in the node: "secret: !"
// read as empty turned the sticky secret off, "secret: ! x" read as "x",
// while "!x" was refused (found by review). A plain value cannot begin
// with "!", so a "!" where the node begins, after its anchor if any, is a
// tag; explicit ones are marked tagged and checked by the caller.
func (d *decoder) bareTag(n *yaml.Node) bool {
	if n.Style&yaml.TaggedStyle != 0 || n.Line < 1 || n.Column < 1 {
		return false
	}
	if d.lineStarts == nil {
		d.lineStarts = yamlLineStarts(d.src)
	}
	if n.Line > len(d.lineStarts) {
		return false
	}
	at, col := d.lineStarts[n.Line-1], 1
	if d.atLine == n.Line && d.atCol <= n.Column {
		at, col = d.atOff, d.atCol
	}
	// yaml.v3 counts columns in characters.
	for ; col < n.Column && at < len(d.src); col++ {
		_, size := utf8.DecodeRune(d.src[at:])
		at += size
	}
	d.atLine, d.atCol, d.atOff = n.Line, col, at
	rest := d.src[at:]
	if len(rest) > 0 && rest[0] == '&' {
		// The anchor first (&name !): its name runs to a blank.
		i := bytes.IndexAny(rest, " \t\r\n")
		if i < 0 {
			return false
		}
		rest = bytes.TrimLeft(rest[i:], " \t")
	}
	return len(rest) > 0 && rest[0] == '!'
}

// yamlLineStarts is the offset of each line of src as yaml.v3 counts
// lines: after "\r\n", "\n", "\r", NEL, LS or PS, past a byte order mark.
func yamlLineStarts(src []byte) []int {
	start := 0
	if bytes.HasPrefix(src, []byte("\ufeff")) {
		start = len("\ufeff")
	}
	starts := []int{start}
	for i := start; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		i += size
		switch r {
		case '\r':
			if i < len(src) && src[i] == '\n' {
				i++
			}
		case '\n', '\u0085', '\u2028', '\u2029':
		default:
			continue
		}
		starts = append(starts, i)
	}
	return starts
}

// line is where a field found at line l is placed (see aliasLine).
func (d *decoder) line(l int) int {
	if d.aliasLine != 0 {
		return d.aliasLine
	}
	return l
}

func (d *decoder) fail(line int, path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) {
	d.nodes++
	if d.nodes > maxNodes || depth > 64 {
		if d.nodes == maxNodes+1 || depth == 65 {
			d.fail(n.Line, path, "document too large or too deeply nested")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		outer := d.aliasLine
		if outer == 0 {
			d.aliasLine = n.Line
		}
		d.decode(n.Alias, v, path, depth+1)
		d.aliasLine = outer
		return
	}
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = d.line(n.Line)
	}
	if n.Tag != "" && !strings.HasPrefix(n.ShortTag(), "!!") || d.bareTag(n) {
		// A tag of the user's own (!env X) was dropped, and the text
		// after it taken as the value: a sticky secret of "X" (found
		// by review).
		// The tag is not quoted: an unquoted secret starting with "!"
		// would be shown in the error, and kept in last_reload_error
		// (found by review).
		d.fail(n.Line, path, "a YAML tag (!...) is not allowed: sluice does not expand tags; quote a value that starts with !")
		return
	}
	if isNull(n) {
		if n.Anchor != "" {
			// "secret: &S3cret" is an anchor on an empty value: taken
			// as empty, it turned the sticky secret off without a word
			// (found by review).
			d.fail(n.Line, path, "an anchor (&...) on an empty value; quote a value that starts with &")
		}
		return // an empty value keeps the default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			if dv, ok := v.Interface().(defaulter); ok {
				dv.setDefaults()
			}
		}
		d.decode(n, v.Elem(), path, depth+1)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) || v.Type() == durationType {
		d.scalar(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, path, depth)
	case reflect.Map:
		d.mapping(n, v, path, depth)
	case reflect.Slice:
		d.sequence(n, v, path, depth)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	isUnmarshaler := reflect.PointerTo(v.Type()).Implements(unmarshalerType)
	if n.Kind != yaml.ScalarNode && !isUnmarshaler {
		d.fail(n.Line, path, "want %s, got a %s", describe(v.Type()), kindName(n.Kind))
		return
	}
	if v.Type() == durationType {
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n.Line, path, "want a duration such as 2s or 150ms, got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	if !isUnmarshaler && isInteger(v.Kind()) && n.ShortTag() == "!!float" {
		// yaml.v3 would cut 0.9 down to 0: a weight that sends nothing.
		d.fail(n.Line, path, "want %s, got %q", describe(v.Type()), n.Value)
		return
	}
	if !isUnmarshaler && isInteger(v.Kind()) && n.ShortTag() == "!!int" && leadingZero(n.Value) {
		// yaml.v3 reads 010 as YAML 1.1's octal 8 (and refuses 08):
		// a number that means other than it reads (found by review).
		d.fail(n.Line, path, "want %s, got %q: a leading 0 reads as octal; write it without", describe(v.Type()), n.Value)
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		if isUnmarshaler {
			d.fail(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		d.fail(n.Line, path, "want %s, got %q", describe(v.Type()), n.Value)
	}
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "want a mapping, got a %s", kindName(n.Kind))
		return
	}
	if dv, ok := v.Addr().Interface().(defaulter); ok && v.IsZero() {
		dv.setDefaults()
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		sub := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.fail(k.Line, sub, "%s", badKey(k))
			continue
		}
		if seen[k.Value] {
			d.fail(k.Line, sub, "defined twice")
			continue
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k.Line, sub, "unknown field (known: %s)", knownNames(fields))
			continue
		}
		d.lines[sub] = d.line(k.Line)
		d.decode(val, v.Field(idx), sub, depth+1)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "want a mapping, got a %s", kindName(n.Kind))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n.Line, path, "unsupported map key type")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		sub := join(path, k.Value)
		if msg := badKey(k); msg != "" {
			// Taken as a name, "<<: *w" under pools made a pool named
			// "<<", and "*w:" one named "w" (found by review).
			d.fail(k.Line, sub, "%s", msg)
			continue
		}
		key := reflect.ValueOf(k.Value).Convert(v.Type().Key())
		if v.MapIndex(key).IsValid() {
			d.fail(k.Line, sub, "defined twice")
			continue
		}
		d.lines[sub] = d.line(k.Line)
		elem := reflect.New(v.Type().Elem()).Elem()
		if elem.Kind() != reflect.Pointer {
			if dv, ok := elem.Addr().Interface().(defaulter); ok {
				dv.setDefaults()
			}
		}
		d.decode(val, elem, sub, depth+1)
		v.SetMapIndex(key, elem)
	}
}

// badKey says why key node k cannot name a map entry ("" if it can): a
// merge key, refused as in a struct (where it is an unknown field), an
// alias or a key that is not a scalar.
func badKey(k *yaml.Node) string {
	switch {
	case k.Kind == yaml.AliasNode:
		return "an alias (*name) cannot be a key"
	case k.Kind != yaml.ScalarNode:
		return "a key must be a name"
	case k.ShortTag() == "!!merge":
		return "merge keys (<<) are not supported"
	}
	return ""
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "want a list, got a %s", kindName(n.Kind))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		elem := s.Index(i)
		if elem.Kind() != reflect.Pointer {
			if dv, ok := elem.Addr().Interface().(defaulter); ok {
				dv.setDefaults()
			}
		}
		sub := path + "[" + strconv.Itoa(i) + "]"
		scalarItem := elem.Kind() != reflect.Struct && elem.Kind() != reflect.Pointer ||
			reflect.PointerTo(elem.Type()).Implements(unmarshalerType)
		if scalarItem && isNull(item) {
			// A list item has no default to keep: an empty one (a "-"
			// left alone, [~]) would be a zero value no one wrote, such
			// as the status range 0-0 (found by review). An empty struct
			// item is left to validation, which names the field it lacks.
			d.fail(item.Line, sub, "empty item")
			continue
		}
		d.decode(item, elem, sub, depth+1)
	}
	v.Set(s)
}

// leadingZero reports whether s is a decimal-looking integer with a
// leading 0 (010, -07, 0_10), which YAML 1.1 reads as octal.
func leadingZero(s string) bool {
	// yaml.v3 drops underscores before it reads the digits: 0_10 is 010
	// (found by review).
	s = strings.ReplaceAll(strings.TrimLeft(s, "+-"), "_", "")
	return len(s) > 1 && s[0] == '0' && s[1] >= '0' && s[1] <= '9'
}

// isNull reports whether n is an empty value, through an alias.
func isNull(n *yaml.Node) bool {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yamlFields maps each YAML key of a struct type to its field index.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		m[name] = i
	}
	return m
}

func knownNames(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	default:
		return "document"
	}
}

func describe(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 2s or 150ms"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	default:
		return t.String()
	}
}
