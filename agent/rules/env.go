package rules

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
)

// Variables are the CEL variables every condition may use, with their types.
var Variables = []struct {
	// Name is the variable's name.
	Name string
	// Type is its CEL type.
	Type string
}{
	{"kind", "string"}, {"process", processTypeName}, {"parent", processTypeName},
	{"ancestors", "list(" + processTypeName + ")"}, {"file", fileTypeName}, {"cred", credTypeName},
	{"ptrace", ptraceTypeName}, {"module", moduleTypeName}, {"memfd", memfdTypeName},
	{"mount", mountTypeName}, {"bpf", bpfTypeName}, {"kill", killTypeName},
	{"login", loginTypeName}, {"network", networkTypeName}, {"user", userTypeName},
}

// baseEnv returns the CEL environment with the variables and functions of
// the rule language, before any list or macro is declared.
func baseEnv() (*cel.Env, error) {
	prov, err := newProvider()
	if err != nil {
		return nil, err
	}
	opts := []cel.EnvOption{
		cel.CustomTypeProvider(prov),
		cel.CustomTypeAdapter(prov.Registry),
		ext.Strings(),
		ext.Lists(),
		ext.Bindings(),
	}
	for _, v := range Variables {
		var t *cel.Type
		switch v.Type {
		case "string":
			t = cel.StringType
		case "list(" + processTypeName + ")":
			t = cel.ListType(cel.ObjectType(processTypeName))
		default:
			t = cel.ObjectType(v.Type)
		}
		opts = append(opts, cel.Variable(v.Name, t))
	}
	opts = append(opts, functions()...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	return env, nil
}

var stringList = cel.ListType(cel.StringType)

// functions are the helpers rules call besides CEL's standard library and
// the strings, lists and bindings extensions. doc.go lists them.
func functions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Function("under",
			cel.Overload("under_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(p, dir ref.Val) ref.Val {
					return types.Bool(under(string(p.(types.String)), string(dir.(types.String))))
				})),
			cel.Overload("under_string_list", []*cel.Type{cel.StringType, stringList}, cel.BoolType,
				cel.BinaryBinding(func(p, dirs ref.Val) ref.Val {
					s := string(p.(types.String))
					return types.Bool(anyString(dirs, func(d string) bool { return under(s, d) }))
				})),
			cel.MemberOverload("string_under_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(p, dir ref.Val) ref.Val {
					return types.Bool(under(string(p.(types.String)), string(dir.(types.String))))
				})),
			cel.MemberOverload("string_under_list", []*cel.Type{cel.StringType, stringList}, cel.BoolType,
				cel.BinaryBinding(func(p, dirs ref.Val) ref.Val {
					s := string(p.(types.String))
					return types.Bool(anyString(dirs, func(d string) bool { return under(s, d) }))
				})),
		),
		cel.Function("glob",
			cel.MemberOverload("string_glob_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(p, pat ref.Val) ref.Val {
					ok, _ := path.Match(string(pat.(types.String)), string(p.(types.String)))
					return types.Bool(ok)
				})),
			cel.MemberOverload("string_glob_list", []*cel.Type{cel.StringType, stringList}, cel.BoolType,
				cel.BinaryBinding(func(p, pats ref.Val) ref.Val {
					s := string(p.(types.String))
					return types.Bool(anyString(pats, func(pat string) bool {
						ok, _ := path.Match(pat, s)
						return ok
					}))
				})),
		),
		cel.Function("abspath",
			cel.Overload("abspath_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.StringType,
				cel.BinaryBinding(func(p, cwd ref.Val) ref.Val {
					return types.String(absPath(string(p.(types.String)), string(cwd.(types.String))))
				})),
		),
		cel.Function("base",
			cel.Overload("base_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(p ref.Val) ref.Val { return types.String(path.Base(string(p.(types.String)))) })),
		),
		cel.Function("dirname",
			cel.Overload("dirname_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(p ref.Val) ref.Val { return types.String(path.Dir(string(p.(types.String)))) })),
		),
		cel.Function("quote",
			cel.Overload("quote_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(s ref.Val) ref.Val { return types.String(strconv.Quote(string(s.(types.String)))) })),
		),
		cel.Function("octal",
			cel.Overload("octal_int", []*cel.Type{cel.IntType}, cel.StringType,
				cel.UnaryBinding(func(n ref.Val) ref.Val { return types.String(fmt.Sprintf("%04o", int64(n.(types.Int)))) })),
		),
		cel.Function("any_bits",
			cel.Overload("any_bits_int_int", []*cel.Type{cel.IntType, cel.IntType}, cel.BoolType,
				cel.BinaryBinding(func(x, m ref.Val) ref.Val { return types.Bool(int64(x.(types.Int))&int64(m.(types.Int)) != 0) })),
		),
		cel.Function("all_bits",
			cel.Overload("all_bits_int_int", []*cel.Type{cel.IntType, cel.IntType}, cel.BoolType,
				cel.BinaryBinding(func(x, m ref.Val) ref.Val {
					mask := int64(m.(types.Int))
					return types.Bool(int64(x.(types.Int))&mask == mask)
				})),
		),
		cel.Function("file_arg",
			cel.Overload("file_arg_process_list", []*cel.Type{cel.ObjectType(processTypeName), stringList}, stringList,
				cel.BinaryBinding(func(p, files ref.Val) ref.Val {
					proc, ok := p.Value().(*Process)
					if !ok {
						return types.NewErr("file_arg: not a process")
					}
					var want []string
					anyString(files, func(f string) bool { want = append(want, f); return false })
					if f, arg, ok := fileArg(proc, want); ok {
						return types.NewStringList(types.DefaultTypeAdapter, []string{f, arg})
					}
					return types.NewStringList(types.DefaultTypeAdapter, nil)
				})),
		),
	}
}

// constList is a list of strings as a CEL value whose elements are CEL
// strings already: types.NewStringList converts (and allocates) an element
// on every read, and rules read lists element by element (under, exists,
// the runtime check of a list argument's type) on every event. Named lists
// and process.args are made with it.
func constList(values []string) ref.Val {
	vals := make([]ref.Val, len(values))
	for i, v := range values {
		vals[i] = types.String(v)
	}
	return types.NewRefValList(types.DefaultTypeAdapter, vals)
}

// anyString reports whether f holds for a string of the CEL list l.
func anyString(l ref.Val, f func(string) bool) bool {
	lister, ok := l.(traits.Lister)
	if !ok {
		return false
	}
	for it := lister.Iterator(); it.HasNext() == types.True; {
		if s, ok := it.Next().(types.String); ok && f(string(s)) {
			return true
		}
	}
	return false
}

// under reports whether p is dir or lies below it.
func under(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || (strings.HasPrefix(p, dir) && len(p) > len(dir) && p[len(dir)] == '/')
}

// absPath makes p absolute against cwd and cleans it; a relative p with no
// cwd stays as given.
func absPath(p, cwd string) string {
	if p == "" {
		return ""
	}
	if !path.IsAbs(p) {
		if cwd == "" {
			return p
		}
		p = path.Join(cwd, p)
	}
	return path.Clean(p)
}

// fileArg finds the first argument after argv[0] that names one of files
// (or its backup copy, the name with "-" appended) in any spelling relative
// to the working directory or absolute (/etc//shadow, ./shadow in /etc),
// alone or after an option's "=" (dd if=/etc/shadow). It returns the file
// named and the argument.
func fileArg(p *Process, files []string) (string, string, bool) {
	if len(p.Args) < 2 {
		return "", "", false
	}
	for _, arg := range p.Args[1:] {
		candidates := [2]string{arg, ""}
		if _, v, ok := strings.Cut(arg, "="); ok {
			candidates[1] = v
		}
		for _, c := range candidates {
			if c == "" || strings.HasPrefix(c, "-") || (!path.IsAbs(c) && p.Cwd == "") {
				continue
			}
			abs := absPath(c, p.Cwd)
			for _, f := range files {
				if abs == f || abs == f+"-" {
					return f, arg, true
				}
			}
		}
	}
	return "", "", false
}
