package rules

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"

	"github.com/vigil-sensor/vigil/agent/event"
)

// benchExec is an ordinary exec that fires no rule: every condition of the
// exec kind is evaluated in full.
func benchExec(b *testing.B) *Input {
	x := &event.Exec{
		Time: time.Unix(1000, 0), Exe: "/usr/bin/git", Filename: "/usr/bin/git", Cwd: "/home/u/src",
		Args:    []string{"git", "status", "--short"},
		Process: event.Process{PID: 4242, PPID: 10, UID: 1000, EUID: 1000, Comm: "git"},
	}
	in, ok := InputFor(x, nil, bash, chain(bash, sshd, systemd), nil)
	if !ok {
		b.Fatal("no input")
	}
	return in
}

// BenchmarkEvaluateExec evaluates the default rules of kind exec on one
// exec event that fires none of them.
func BenchmarkEvaluateExec(b *testing.B) {
	e := NewEngine(defaults(b), Options{Probe: fakeProbe(0)})
	in := benchExec(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if m := e.Evaluate(in); len(m) != 0 {
			b.Fatalf("fired %s", m[0].Rule.ID)
		}
	}
	b.ReportMetric(float64(len(defaults(b).ForKind(KindExec))), "rules")
}

const fieldExpr = `process.name in ['nmap', 'masscan'] || process.exe.startsWith('/tmp/') || parent.name == 'nginx' || process.uid == 0`

// BenchmarkFieldAccess compares the package's typed provider with
// ext.NativeTypes on the same expression and data.
func BenchmarkFieldAccess(b *testing.B) {
	in := benchExec(b)
	b.Run("provider", func(b *testing.B) {
		env, err := baseEnv()
		if err != nil {
			b.Fatal(err)
		}
		prg := compileBench(b, env, fieldExpr)
		act := activation{in}
		b.ReportAllocs()
		for b.Loop() {
			if v, _, err := prg.Eval(act); err != nil || v.Value() != false {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("native", func(b *testing.B) {
		env, err := cel.NewEnv(
			ext.NativeTypes(reflect.TypeFor[Process](), ext.ParseStructTags(true)),
			cel.Variable("process", cel.ObjectType("rules.Process")),
			cel.Variable("parent", cel.ObjectType("rules.Process")),
		)
		if err != nil {
			b.Fatal(err)
		}
		// NativeTypes keeps Go's uint32 as CEL uint, which needs a 0u literal.
		prg := compileBench(b, env, fieldExpr[:len(fieldExpr)-1]+"0u")
		vars := map[string]any{"process": &in.Process, "parent": &in.Parent}
		b.ReportAllocs()
		for b.Loop() {
			if v, _, err := prg.Eval(vars); err != nil || v.Value() != false {
				b.Fatal(v, err)
			}
		}
	})
}

func compileBench(b *testing.B, env *cel.Env, expr string) cel.Program {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		b.Fatal(iss.Err())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		b.Fatal(err)
	}
	return prg
}
