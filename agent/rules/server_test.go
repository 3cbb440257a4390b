package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// serverRule is a rule a server set adds: it fires on exec of "fleetcheck".
const serverRule = `lists:
  fleet_tools: [fleetcheck]
rules:
  - id: fleet-rule
    title: t
    description: d
    severity: medium
    tactic: TA0002 Execution
    technique: T1059 Command and Scripting Interpreter
    on: [exec]
    condition: process.name in fleet_tools
    reason: "'fleet ' + process.exe"
`

// serverSet returns a hashed server set of version v with files name=content.
func serverSet(v uint64, files ...string) *vigilv1.RuleSet {
	rs := &vigilv1.RuleSet{Version: v}
	for i := 0; i+1 < len(files); i += 2 {
		rs.Files = append(rs.Files, &vigilv1.RuleFile{Name: files[i], Content: files[i+1]})
	}
	rs.Hash = HashRuleFiles(rs.Files)
	return rs
}

func TestCheckRuleFiles(t *testing.T) {
	ok := [][]*vigilv1.RuleFile{
		nil,
		{{Name: "a.yaml"}, {Name: "10-web_servers.v2.yaml", Content: "rules: []\n"}},
	}
	for _, files := range ok {
		if err := CheckRuleFiles(files); err != nil {
			t.Errorf("CheckRuleFiles(%v): %v", files, err)
		}
	}
	for _, tc := range []struct {
		files []*vigilv1.RuleFile
		want  string
	}{
		{[]*vigilv1.RuleFile{{Name: "../etc/passwd.yaml"}}, `file #1: name "../etc/passwd.yaml"`},
		{[]*vigilv1.RuleFile{{Name: "a.yaml"}, {Name: "sub/b.yaml"}}, `file #2: name "sub/b.yaml"`},
		{[]*vigilv1.RuleFile{{Name: ".hidden.yaml"}}, `name ".hidden.yaml"`},
		{[]*vigilv1.RuleFile{{Name: "rules.yml"}}, `name "rules.yml"`},
		{[]*vigilv1.RuleFile{{Name: strings.Repeat("a", 124) + ".yaml"}}, "at most 128 bytes"},
		{[]*vigilv1.RuleFile{{Name: "a.yaml"}, {Name: "a.yaml"}}, `file "a.yaml" given twice`},
		{[]*vigilv1.RuleFile{{Name: "a.yaml", Content: strings.Repeat("#", MaxServerBytes+1)}}, "bytes of rules, at most"},
	} {
		err := CheckRuleFiles(tc.files)
		if !errors.Is(err, ErrServerSet) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckRuleFiles(%s): %v, want ErrServerSet with %q", tc.files[len(tc.files)-1].GetName(), err, tc.want)
		}
	}
	many := make([]*vigilv1.RuleFile, MaxServerFiles+1)
	for i := range many {
		many[i] = &vigilv1.RuleFile{Name: strings.Repeat("x", i+1)[:min(i+1, 100)] + ".yaml"}
	}
	if err := CheckRuleFiles(many); !errors.Is(err, ErrServerSet) {
		t.Errorf("%d files: %v", len(many), err)
	}
}

func TestHashRuleFiles(t *testing.T) {
	a := HashRuleFiles([]*vigilv1.RuleFile{{Name: "a.yaml", Content: "x"}})
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Fatalf("hash %q", a)
	}
	// Moving bytes between name and content, or between files, changes it.
	for _, other := range [][]*vigilv1.RuleFile{
		{{Name: "a.yamlx", Content: ""}},
		{{Name: "a.yaml", Content: "x"}, {Name: "b.yaml"}},
		{{Name: "a.yaml", Content: "y"}},
	} {
		if HashRuleFiles(other) == a {
			t.Errorf("%v hashes like a.yaml=x", other)
		}
	}
	if HashRuleFiles(nil) == a || HashRuleFiles(nil) != HashRuleFiles([]*vigilv1.RuleFile{}) {
		t.Error("hash of no files")
	}
}

func TestValidateRuleFilesNamesThePlace(t *testing.T) {
	if err := ValidateRuleFiles(serverSet(0, "fleet.yaml", serverRule).Files); err != nil {
		t.Fatalf("good set: %v", err)
	}
	broken := strings.Replace(serverRule, "process.name in fleet_tools", "process.nmae in fleet_tools", 1)
	err := ValidateRuleFiles(serverSet(0, "a.yaml", "rules: []\n", "fleet.yaml", broken).Files)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `fleet.yaml:11:23: rule "fleet-rule": condition: undefined field 'nmae'`) {
		t.Fatalf("broken set: %v", err)
	}
	if err := ValidateRuleFiles([]*vigilv1.RuleFile{{Name: "x/y.yaml"}}); !errors.Is(err, ErrServerSet) {
		t.Errorf("bad name: %v", err)
	}
}

func TestCompileLayers(t *testing.T) {
	dir := t.TempDir()
	rs := serverSet(7, "fleet.yaml", serverRule)
	set, err := CompileLayers(rs, dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, h := set.Server(); v != 7 || h != rs.GetHash() {
		t.Errorf("Server() = %d %q", v, h)
	}
	r, ok := set.Rule("fleet-rule")
	if !ok || r.File != ServerPrefix+"fleet.yaml" {
		t.Fatalf("fleet-rule: %v, %+v", ok, r)
	}
	// The host's directory loads after the server's set: its list replaces
	// the server's, and its override changes the server's rule.
	write(t, dir, "local.yaml", "lists:\n  fleet_tools: [localcheck]\nrules:\n  - id: fleet-rule\n    override: true\n    severity: high\n")
	set, err = CompileLayers(rs, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ = set.Rule("fleet-rule")
	if r.Severity != vigilv1.Severity_SEVERITY_HIGH || !r.Overridden {
		t.Errorf("override from the host's directory: severity %v", r.Severity)
	}
	e := NewEngine(set, Options{})
	fired := func(exe string) bool {
		x := execOf(exe)
		x.Time = time.Unix(1000, 0)
		in, _ := InputFor(x, nil, bash, nil, nil)
		for _, m := range e.Evaluate(in) {
			if m.Rule.ID == "fleet-rule" {
				return true
			}
		}
		return false
	}
	if !fired("/usr/bin/localcheck") || fired("/usr/bin/fleetcheck") {
		t.Error("the host's list did not replace the server's")
	}
	// A conflict between the layers names the server's file without prefix.
	write(t, dir, "local.yaml", strings.Replace(serverRule, "lists:\n  fleet_tools: [fleetcheck]\n", "", 1))
	_, err = CompileLayers(rs, dir)
	if err == nil || !strings.Contains(ErrorText(err), `local.yaml:2:9: rule "fleet-rule": duplicate rule id "fleet-rule", first defined at server/fleet.yaml:4`) {
		t.Errorf("conflict: %v", err)
	}
	if errs := ServerErrors(err); len(errs) != 1 || errs[0].GetFile() != filepath.Join(dir, "local.yaml") || errs[0].GetLine() != 2 {
		t.Errorf("ServerErrors = %v", errs)
	}
	// No server set: none reported.
	if set, err := CompileLayers(nil); err != nil {
		t.Fatal(err)
	} else if v, h := set.Server(); v != 0 || h != "" {
		t.Errorf("Server() without a set = %d %q", v, h)
	}
}

func TestSaveLoadServerSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), ServerSetName)
	if rs, err := LoadServerSet(path); rs != nil || err != nil {
		t.Fatalf("missing file: %v, %v", rs, err)
	}
	rs := serverSet(3, "fleet.yaml", serverRule, "more.yaml", "rules: []\n")
	rs.SetBy = "alice"
	if err := SaveServerSet(path, rs); err != nil {
		t.Fatal(err)
	}
	got, err := LoadServerSet(path)
	if err != nil || !proto.Equal(got, rs) {
		t.Fatalf("LoadServerSet = %v, %v; want %v", got, err, rs)
	}
	// A file whose content no longer matches its hash is refused.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "fleetcheck", "fleetcheckX", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadServerSet(path); !errors.Is(err, ErrServerSet) || !strings.Contains(err.Error(), path) {
		t.Errorf("tampered file: %v", err)
	}
}

func TestWatcherReloadWithLoader(t *testing.T) {
	dir := t.TempDir()
	l := NewLoader(nil, dir)
	set, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set, Options{})
	var reloaded []uint64
	w := NewWatcher(e, []string{dir}, WatchOptions{Load: l.Load, OnReload: func(s *Set) {
		v, _ := s.Server()
		reloaded = append(reloaded, v)
	}})
	at := time.Unix(1000, 0)
	fires := func(exe string) bool {
		at = at.Add(time.Minute)
		x := execOf(exe)
		x.Time = at
		in, _ := InputFor(x, nil, bash, nil, nil)
		for _, m := range e.Evaluate(in) {
			if m.Rule.ID == "fleet-rule" {
				return true
			}
		}
		return false
	}
	if fires("/usr/bin/fleetcheck") {
		t.Fatal("fleet-rule fired before the server's set")
	}
	rs := serverSet(1, "fleet.yaml", serverRule)
	if _, err := l.Try(rs); err != nil {
		t.Fatal(err)
	}
	if l.Server() != nil {
		t.Fatal("Try changed the loader")
	}
	l.SetServer(rs)
	if _, err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if !fires("/usr/bin/fleetcheck") {
		t.Error("fleet-rule does not fire after Reload")
	}
	// A change of the directory keeps the server's layer.
	write(t, dir, "local.yaml", goodRule)
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("Check after a new file: %v, %v", changed, err)
	}
	if !fires("/usr/bin/fleetcheck") {
		t.Error("fleet-rule lost by a reload of the directory")
	}
	if len(reloaded) != 2 || reloaded[0] != 1 || reloaded[1] != 1 {
		t.Errorf("OnReload saw server versions %v, want [1 1]", reloaded)
	}
}
