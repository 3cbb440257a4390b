package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error about the content of a rule file.
var ErrInvalid = errors.New("invalid rules")

// Error is one problem in a rule file, with its place.
type Error struct {
	// File is the file's path (default/NAME.yaml for the embedded set).
	File string
	// Line and Column are 1-based; Column is 0 when unknown.
	Line, Column int
	// Item names what the problem is in: `rule "id"`, `rule #3` (no id),
	// `macro "name"` or `list "name"`; empty for the file itself.
	Item string
	// Msg says what is wrong.
	Msg string
}

// Error implements error: FILE:LINE:COL: ITEM: MSG.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	if e.Item != "" {
		b.WriteString(e.Item)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every Error match ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Errors returns the individual problems of an error returned by Load or
// Compile (nil when err holds none).
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if u := errors.Unwrap(err); u != nil {
			walk(u)
		}
	}
	walk(err)
	return out
}

// source is one rule file's text.
type source struct {
	name     string
	lines    []string
	defaults bool
}

func newSource(name string, data []byte) *source {
	return &source{name: name, lines: strings.Split(string(data), "\n")}
}

// errAt makes an Error at a YAML node.
func (s *source) errAt(n *yaml.Node, item, format string, args ...any) *Error {
	e := &Error{File: s.name, Item: item, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

var parserProblems = []string{
	"did not find expected <document start>", "did not find expected key",
	"did not find expected node content", "did not find expected ',' or ']'",
	"did not find expected ',' or '}'", "did not find expected '-' indicator",
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErr turns a yaml syntax error into an Error. The YAML parser reports
// only a line; the column is that of the line's first non-blank character.
func (s *source) yamlErr(err error) *Error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: s.name, Line: 1, Column: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	// The YAML library numbers lines from 1 for scanner errors but from 0
	// for parser errors (which point at the start of the construct that
	// could not be finished); the parser's messages are these.
	for _, p := range parserProblems {
		if m[2] == p {
			line++
			break
		}
	}
	col := 1
	if line >= 1 && line <= len(s.lines) {
		col = len(s.lines[line-1]) - len(strings.TrimLeft(s.lines[line-1], " \t")) + 1
	}
	return &Error{File: s.name, Line: line, Column: col, Msg: "yaml: " + m[2]}
}

// celErrs turns CEL issues of an expression taken from scalar node n into
// Errors placed in the file: CEL's line and column inside the expression are
// mapped back to the file by walking the scalar's text in the file.
func (s *source) celErrs(n *yaml.Node, item, what string, expr string, iss *cel.Issues) []*Error {
	var out []*Error
	for _, ce := range iss.Errors() {
		off := exprOffset(expr, ce.Location.Line(), ce.Location.Column())
		line, col := s.locate(n, expr, off)
		msg := ce.Message
		out = append(out, &Error{File: s.name, Line: line, Column: col, Item: item, Msg: what + ": " + msg})
	}
	return out
}

// exprOffset converts CEL's 1-based line and 0-based column (in code
// points) into a byte offset of expr.
func exprOffset(expr string, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(expr[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	for c := 0; c < col && off < len(expr); c++ {
		_, size := utf8.DecodeRuneInString(expr[off:])
		off += size
	}
	return off
}

// locate finds the file position (1-based line and column) of byte off of
// the value of scalar node n. It walks the value and the file text side by
// side from where the value starts; whitespace that folding, indentation or
// line breaks changed, and escape characters, are skipped on either side.
func (s *source) locate(n *yaml.Node, value string, off int) (int, int) {
	l, c := n.Line-1, n.Column-1
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		l, c = n.Line, 0
		for l < len(s.lines) && strings.TrimSpace(s.lines[l]) == "" {
			l++
		}
		if l < len(s.lines) {
			c = len(s.lines[l]) - len(strings.TrimLeft(s.lines[l], " \t"))
		}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		c++
	}
	for i := 0; i < off && l < len(s.lines); {
		if c >= len(s.lines[l]) {
			l++
			c = 0
			for l < len(s.lines) && c < len(s.lines[l]) && (s.lines[l][c] == ' ' || s.lines[l][c] == '\t') {
				c++
			}
			if value[i] == '\n' || value[i] == ' ' {
				i++
			}
			continue
		}
		switch ec, sc := value[i], s.lines[l][c]; {
		case ec == sc:
			i++
			c++
		case ec == ' ' || ec == '\n' || ec == '\t':
			i++
		default:
			c++
		}
	}
	return l + 1, c + 1
}
