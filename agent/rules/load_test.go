package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

const goodRule = `rules:
  - id: local-rule
    title: t
    description: d
    severity: low
    tactic: TA0002 Execution
    technique: T1059 Command and Scripting Interpreter
    on: [exec]
    condition: process.name == 'frobnicate'
    reason: "'frobnicated ' + process.exe"
`

// compileOne compiles the defaults with one operator file and returns the
// problems as strings.
func compileOne(t *testing.T, name, text string) []string {
	t.Helper()
	defaults, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(defaults, []Source{{Name: name, Data: []byte(text)}})
	if err == nil {
		t.Fatalf("%s compiled", name)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	var out []string
	for _, e := range Errors(err) {
		out = append(out, e.Error())
	}
	return out
}

func TestBrokenFilesAreReportedWithTheirPlace(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"yaml syntax", "rules:\n  - id: x\n    title: [unclosed\n", []string{
			"syntax.yaml:3:5: yaml: did not find expected ',' or ']'",
		}},
		{"unknown key", strings.Replace(goodRule, "    reason:", "    severty: high\n    reason:", 1), []string{
			`unknown.yaml:10:5: rule "local-rule": unknown key "severty"`,
		}},
		{"undefined field", strings.Replace(goodRule, "process.name == 'frobnicate'", "process.exee == 'frobnicate'", 1), []string{
			`field.yaml:9:23: rule "local-rule": condition: undefined field 'exee'`,
		}},
		{"undefined field in block", strings.Replace(goodRule, "    condition: process.name == 'frobnicate'\n", "    condition: >-\n      process.name == 'frobnicate' &&\n        parent.nmae == 'x'\n", 1), []string{
			`block.yaml:11:15: rule "local-rule": condition: undefined field 'nmae'`,
		}},
		{"non-bool condition", strings.Replace(goodRule, "process.name == 'frobnicate'", "process.name", 1), []string{
			`nonbool.yaml:9:16: rule "local-rule": condition: want a bool expression, found string`,
		}},
		{"reason not a string", strings.Replace(goodRule, `"'frobnicated ' + process.exe"`, "process.pid", 1), []string{
			`reason.yaml:10:13: rule "local-rule": reason: want a string expression, found int`,
		}},
		{"unknown severity", strings.Replace(goodRule, "severity: low", "severity: urgent", 1), []string{
			`sev.yaml:5:15: rule "local-rule": severity: unknown "urgent", want info, low, medium, high or critical`,
		}},
		{"unknown response", strings.Replace(goodRule, "    reason:", "    response: nuke\n    reason:", 1), []string{
			`resp.yaml:10:15: rule "local-rule": response: unknown "nuke", want one of none, kill, freeze, quarantine, block_source, isolate, restore`,
		}},
		{"unknown kind", strings.Replace(goodRule, "on: [exec]", "on: [exec, fork]", 1), []string{
			`kind.yaml:8:16: rule "local-rule": on: unknown event kind "fork", want one of exec, exit, file, cred, ptrace, module, memfd, mount, bpf, kill, login, connect, accept, close, udp, dns`,
		}},
		{"duplicate id in file", goodRule + strings.TrimPrefix(goodRule, "rules:\n"), []string{
			`dup.yaml:11:9: rule "local-rule": duplicate rule id "local-rule", first defined at dup.yaml:2`,
		}},
		{"default id without override", strings.Replace(goodRule, "local-rule", "exec-from-tmp", 1), []string{
			`clash.yaml:2:9: rule "exec-from-tmp": duplicate rule id "exec-from-tmp", first defined at default/execution.yaml:3; set override: true to change it`,
		}},
		{"override of unknown rule", "rules:\n  - id: no-such-rule\n    override: true\n    enabled: false\n", []string{
			`over.yaml:2:9: rule "no-such-rule": override of unknown rule "no-such-rule"`,
		}},
		{"bad macro", "macros:\n  my_macro: process.nope\n", []string{
			`macro.yaml:2:20: macro "my_macro": macro: undefined field 'nope'`,
		}},
		{"missing keys", "rules:\n  - id: bare\n", []string{
			`missing.yaml:2:9: rule "bare": missing title`,
			`missing.yaml:2:9: rule "bare": missing description`,
			`missing.yaml:2:9: rule "bare": missing severity`,
			`missing.yaml:2:9: rule "bare": missing tactic`,
			`missing.yaml:2:9: rule "bare": missing technique`,
			`missing.yaml:2:9: rule "bare": missing on`,
			`missing.yaml:2:9: rule "bare": missing condition`,
			`missing.yaml:2:9: rule "bare": missing reason`,
		}},
		{"no id", "rules:\n  - title: x\n", []string{
			`noid.yaml:2:5: rule #1: missing id`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := strings.SplitN(tt.want[0], ":", 2)[0]
			got := compileOne(t, file, tt.text)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestOperatorFilesOverrideAndDisable(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "10-local.yaml", goodRule+`
  - id: exec-from-tmp
    override: true
    enabled: false
  - id: network-scanner
    override: true
    severity: critical
    exceptions:
      - name: the red team's scanner host
        condition: process.user == 'redteam'
lists:
  scanners: [nmap, frobscan]
`)
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := set.Rule("exec-from-tmp")
	if r.Enabled || !r.Overridden {
		t.Errorf("exec-from-tmp: enabled=%v overridden=%v, want disabled override", r.Enabled, r.Overridden)
	}
	for _, x := range set.ForKind(KindExec) {
		if x.ID == "exec-from-tmp" {
			t.Error("a disabled rule is still indexed")
		}
	}
	e := NewEngine(set, Options{})
	fire := func(x *event.Exec, user string) []string {
		in, _ := InputFor(x, nil, bash, nil, func(uint32) string { return user })
		var ids []string
		for _, m := range e.Evaluate(in) {
			ids = append(ids, m.Rule.ID+"/"+SeverityName(m.Rule.Severity)+": "+m.Reason)
		}
		return ids
	}
	if got := fire(execOf("/tmp/x"), "u"); len(got) != 0 {
		t.Errorf("disabled rule fired: %v", got)
	}
	if got := strings.Join(fire(execOf("/usr/bin/frobscan"), "u"), ";"); got != "network-scanner/critical: network scanner frobscan executed" {
		t.Errorf("overridden list and severity: %q", got)
	}
	if got := fire(execOf("/usr/bin/nmap"), "redteam"); len(got) != 0 {
		t.Errorf("override's exception did not apply: %v", got)
	}
	if got := strings.Join(fire(execOf("/usr/bin/frobnicate"), "u"), ";"); got != "local-rule/low: frobnicated /usr/bin/frobnicate" {
		t.Errorf("local rule: %q", got)
	}
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReloadsAndKeepsTheLastGoodSet(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "local.yaml", goodRule)
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set, Options{})
	var reported []error
	w := NewWatcher(e, []string{dir}, WatchOptions{Interval: time.Millisecond, OnError: func(err error) { reported = append(reported, err) }})
	at := time.Unix(1000, 0)
	ids := func(x *event.Exec) string {
		// A minute apart, so that no match is quiet as a repeat.
		at = at.Add(time.Minute)
		x.Time = at
		in, _ := InputFor(x, nil, bash, nil, nil)
		var out []string
		for _, m := range e.Evaluate(in) {
			out = append(out, m.Rule.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids(execOf("/usr/bin/frobnicate")); got != "local-rule" {
		t.Fatalf("before any change: fired %q", got)
	}
	if changed, err := w.Check(); changed || err != nil {
		t.Fatalf("no change: changed=%v err=%v", changed, err)
	}

	// A broken file: the set stays, the error is reported once.
	write(t, dir, "broken.yaml", "rules:\n  - id: broken\n    bogus: 1\n")
	changed, err := w.Check()
	if changed || err == nil || !strings.Contains(err.Error(), "broken.yaml:3:5: rule \"broken\": unknown key \"bogus\"") {
		t.Fatalf("broken file: changed=%v err=%v", changed, err)
	}
	if e.Set() != set || len(reported) != 1 {
		t.Fatalf("set replaced (%v) or error reported %d times", e.Set() != set, len(reported))
	}
	if got := ids(execOf("/usr/bin/frobnicate")); got != "local-rule" {
		t.Fatalf("after broken file: fired %q", got)
	}
	if changed, err := w.Check(); changed || err != nil || len(reported) != 1 {
		t.Fatalf("unchanged broken file tried again: changed=%v err=%v reports=%d", changed, err, len(reported))
	}

	// Fixed: the new rule is active in the same engine.
	write(t, dir, "broken.yaml", strings.NewReplacer("local-rule", "fixed-rule", "frobnicate", "defrobnicate").Replace(goodRule))
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("fixed file: changed=%v err=%v", changed, err)
	}
	if got := ids(execOf("/usr/bin/defrobnicate")); got != "fixed-rule" {
		t.Errorf("after fix: fired %q, want fixed-rule", got)
	}
	if got := ids(execOf("/usr/bin/frobnicate")); got != "local-rule" {
		t.Errorf("after fix the first rule: fired %q", got)
	}

	// A removed file takes its rule with it.
	if err := os.Remove(filepath.Join(dir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("removed file: changed=%v err=%v", changed, err)
	}
	if got := ids(execOf("/usr/bin/defrobnicate")); got != "" {
		t.Errorf("after removal: fired %q", got)
	}
}

func TestValidateAndListCommands(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "local.yaml", goodRule)
	var out, errOut strings.Builder
	if code := Command([]string{"validate", dir}, &out, &errOut); code != 0 {
		t.Fatalf("validate: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), filepath.Join(dir, "local.yaml")+": 1 rules\n") ||
		!strings.Contains(out.String(), "default/execution.yaml: 5 rules\n") {
		t.Errorf("validate output:\n%s", out.String())
	}
	write(t, dir, "bad.yaml", "rules:\n  - id: bad\n    severity: urgent\n")
	out.Reset()
	errOut.Reset()
	if code := Command([]string{"validate", dir}, &out, &errOut); code != 1 {
		t.Fatalf("validate of a broken dir: exit %d", code)
	}
	if !strings.Contains(errOut.String(), filepath.Join(dir, "bad.yaml")+`:3:15: rule "bad": severity: unknown "urgent"`) ||
		!strings.Contains(errOut.String(), filepath.Join(dir, "bad.yaml")+`:2:9: rule "bad": missing title`) {
		t.Errorf("validate errors:\n%s", errOut.String())
	}
	if err := os.Remove(filepath.Join(dir, "bad.yaml")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := Command([]string{"list", dir}, &out, &errOut); code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut.String())
	}
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "shadow-file-read ") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if line != "shadow-file-read high T1003.008 exec,file enabled" {
		t.Errorf("list line for shadow-file-read: %q", line)
	}
}

// TestRulesCommandPaths checks that a path given to rules validate or list
// must exist and hold rules, that a single .yaml file is accepted, and
// that every command has its --help.
func TestRulesCommandPaths(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "local.yaml", goodRule)
	write(t, dir, "notes.txt", "hello")
	file := filepath.Join(dir, "local.yaml")
	missing := filepath.Join(dir, "nonexistent")
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string // a line it must contain
		stderr string // exactly
		noOK   bool
	}{
		{[]string{"validate", missing}, 1, "", "rules validate: rules path " + missing + ": no such file or directory\n", true},
		{[]string{"validate", empty}, 1, "", "rules validate: rules path " + empty + ": no *.yaml files in the directory\n", true},
		{[]string{"validate", filepath.Join(dir, "notes.txt")}, 1, "", "rules validate: rules path " + filepath.Join(dir, "notes.txt") + ": not a directory nor a .yaml file\n", true},
		{[]string{"validate", file}, 0, file + ": 1 rules\n", "", false},
		{[]string{"list", missing}, 1, "", "rules list: rules path " + missing + ": no such file or directory\n", true},
		// A host may run on the server's rules alone: an empty directory lists.
		{[]string{"list", "--state-dir", dir, empty}, 0, "server rule set: none (" + filepath.Join(dir, ServerSetName) + " holds none)\n", "", false},
		{[]string{"--help"}, 0, "usage: vigil-agent rules validate [PATH...]\n", "", false},
		{[]string{"validate", "--help"}, 0, "usage: vigil-agent rules validate [PATH...]\n", "", false},
		{[]string{"list", "--help"}, 0, "usage: vigil-agent rules list [--state-dir DIR] [PATH...]\n", "", false},
		{[]string{"frob"}, 2, "", "rules: unknown command \"frob\" (want validate or list; see vigil-agent rules --help)\n", true},
	} {
		var out, errOut strings.Builder
		code := Command(tt.args, &out, &errOut)
		if code != tt.code || errOut.String() != tt.stderr || !strings.Contains(out.String(), tt.stdout) {
			t.Errorf("rules %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr %q",
				tt.args, code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
		}
		if tt.noOK && out.Len() != 0 {
			t.Errorf("rules %v printed %q", tt.args, out.String())
		}
	}
}
