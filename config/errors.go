package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a config file, located by file, line and
// the dotted path of the field (pools.web.backends[1].weight).
type FieldError struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// At is a FieldError for the field at path in c's file, at that field's
// line (or its nearest parent's): for a problem found beyond parsing, such
// as a file the config names that cannot be opened.
func (c *Config) At(path string, err error) FieldError {
	return FieldError{File: c.File, Line: c.Line(path), Path: path, Msg: err.Error()}
}
