package rules

import (
	"sort"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// nameGuard is the set of process names a rule's condition can only be
// true for, read off the condition itself: when the condition requires
// process.name to be one of a few constants (process.name == "nc",
// process.name in ["nmap", "masscan"], process.name in a list), the engine
// skips the rule for every other program without evaluating CEL. Exec
// events arrive by the thousand a second and most rules name the programs
// they are about, so this is where evaluation time goes. A nil guard means
// the rule must always be evaluated.
type nameGuard map[string]struct{}

// guardOf derives the name guard of a checked condition; lists are the
// file's named lists, which conditions refer to as identifiers.
func guardOf(a *cel.Ast, lists map[string][]string) nameGuard {
	if a == nil {
		return nil
	}
	return guardExpr(a.NativeRep().Expr(), lists)
}

// guardExpr returns the names e can only be true for, or nil when any
// name may do.
func guardExpr(e ast.Expr, lists map[string][]string) nameGuard {
	if e.Kind() != ast.CallKind {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.LogicalAnd:
		// Either side being required is enough; prefer the smaller set.
		l, r := guardExpr(args[0], lists), guardExpr(args[1], lists)
		switch {
		case l == nil:
			return r
		case r == nil || len(l) <= len(r):
			return l
		}
		return r
	case operators.LogicalOr:
		// Both sides must be guarded; the union guards the whole.
		l, r := guardExpr(args[0], lists), guardExpr(args[1], lists)
		if l == nil || r == nil {
			return nil
		}
		out := nameGuard{}
		for n := range l {
			out[n] = struct{}{}
		}
		for n := range r {
			out[n] = struct{}{}
		}
		return out
	case operators.Equals:
		if isProcessName(args[0]) {
			return constString(args[1])
		}
		if isProcessName(args[1]) {
			return constString(args[0])
		}
	case operators.In:
		if isProcessName(args[0]) {
			return constStrings(args[1], lists)
		}
	}
	return nil
}

// isProcessName reports whether e is the field process.name.
func isProcessName(e ast.Expr) bool { return isProcessField(e, "name") }

// constString returns {s} when e is the string literal s.
func constString(e ast.Expr) nameGuard {
	if e.Kind() != ast.LiteralKind {
		return nil
	}
	s, ok := e.AsLiteral().(types.String)
	if !ok {
		return nil
	}
	return nameGuard{string(s): {}}
}

// constStrings returns the strings of a list literal of string literals, or
// of a named list.
func constStrings(e ast.Expr, lists map[string][]string) nameGuard {
	switch e.Kind() {
	case ast.IdentKind:
		vals, ok := lists[e.AsIdent()]
		if !ok {
			return nil
		}
		out := nameGuard{}
		for _, v := range vals {
			out[v] = struct{}{}
		}
		return out
	case ast.ListKind:
		out := nameGuard{}
		for _, el := range e.AsList().Elements() {
			one := constString(el)
			if one == nil {
				return nil
			}
			for n := range one {
				out[n] = struct{}{}
			}
		}
		return out
	}
	return nil
}

// admits reports whether a rule with guard g may fire for process name.
func (g nameGuard) admits(name string) bool {
	if g == nil {
		return true
	}
	_, ok := g[name]
	return ok
}

// KernelKill returns the process names and executables a rule's condition
// consists of, when it consists of nothing else: process.name == "x",
// process.name in [...] or a list, process.exe == "/path", joined by ||, and
// no exceptions. Such a rule can be enforced in the kernel at exec, before
// the image runs; ok is false for any other rule.
func (r *Rule) KernelKill() (names, exes []string, ok bool) {
	if r.ast == nil || len(r.Exceptions) > 0 {
		return nil, nil, false
	}
	names, exes, ok = pureKill(r.ast.NativeRep().Expr(), r.lists)
	return names, exes, ok && (len(names) > 0 || len(exes) > 0)
}

// pureKill is KernelKill on an expression.
func pureKill(e ast.Expr, lists map[string][]string) (names, exes []string, ok bool) {
	if e.Kind() != ast.CallKind {
		return nil, nil, false
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case operators.LogicalOr:
		ln, le, lok := pureKill(args[0], lists)
		rn, re, rok := pureKill(args[1], lists)
		return append(ln, rn...), append(le, re...), lok && rok
	case operators.Equals, operators.In:
		field, other := args[0], args[1]
		if call.FunctionName() == operators.Equals && !isProcessField(field, "") {
			field, other = other, field
		}
		var vals nameGuard
		if call.FunctionName() == operators.Equals {
			vals = constString(other)
		} else {
			vals = constStrings(other, lists)
		}
		if vals == nil {
			return nil, nil, false
		}
		var out []string
		for v := range vals {
			out = append(out, v)
		}
		sort.Strings(out)
		switch {
		case isProcessField(field, "name"):
			return out, nil, true
		case isProcessField(field, "exe"):
			return nil, out, true
		}
	}
	return nil, nil, false
}

// isProcessField reports whether e is process.<name> (any field when name is "").
func isProcessField(e ast.Expr, name string) bool {
	if e.Kind() != ast.SelectKind {
		return false
	}
	sel := e.AsSelect()
	op := sel.Operand()
	return !sel.IsTestOnly() && (name == "" || sel.FieldName() == name) && op.Kind() == ast.IdentKind && op.AsIdent() == "process"
}
