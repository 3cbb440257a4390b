package rules

import (
	"reflect"
	"sort"
	"testing"
)

// TestNameGuards checks which process names each condition is reduced to,
// and that a rule with a guard still fires for its names only.
func TestNameGuards(t *testing.T) {
	const file = `
lists:
  scanners: [nmap, masscan]
rules:
  - id: g-equals
    title: t
    description: d
    severity: low
    tactic: TA0007 Discovery
    technique: T1046 Network Service Discovery
    on: [exec]
    condition: process.name == 'nc' && process.args.size() > 1
    reason: "'x'"
  - id: g-list
    title: t
    description: d
    severity: low
    tactic: TA0007 Discovery
    technique: T1046 Network Service Discovery
    on: [exec]
    condition: process.uid == 0 && process.name in scanners
    reason: "'x'"
  - id: g-or
    title: t
    description: d
    severity: low
    tactic: TA0007 Discovery
    technique: T1046 Network Service Discovery
    on: [exec]
    condition: process.name in ['zmap'] || 'rustscan' == process.name
    reason: "'x'"
  - id: g-none
    title: t
    description: d
    severity: low
    tactic: TA0007 Discovery
    technique: T1046 Network Service Discovery
    on: [exec]
    condition: process.name == 'nc' || process.exe.startsWith('/tmp/')
    reason: "'x'"
  - id: g-negated
    title: t
    description: d
    severity: low
    tactic: TA0007 Discovery
    technique: T1046 Network Service Discovery
    on: [exec]
    condition: "!(process.name in scanners)"
    reason: "'x'"
`
	set, err := Compile(nil, []Source{{Name: "guards.yaml", Data: []byte(file)}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"g-equals":  {"nc"},
		"g-list":    {"masscan", "nmap"},
		"g-or":      {"rustscan", "zmap"},
		"g-none":    nil,
		"g-negated": nil,
	}
	for id, names := range want {
		r, ok := set.Rule(id)
		if !ok {
			t.Fatalf("no rule %s", id)
		}
		var got []string
		for n := range r.guard {
			got = append(got, n)
		}
		sort.Strings(got)
		if r.guard == nil {
			got = nil
		}
		if !reflect.DeepEqual(got, names) {
			t.Errorf("%s: guard %v, want %v", id, got, names)
		}
	}
	e := NewEngine(set, Options{})
	fired := func(name, exe string, uid uint32) []string {
		in := &Input{Kind: KindExec, Process: Process{Name: name, Exe: exe, UID: uid, Args: []string{name, "-z"}}}
		var ids []string
		for _, m := range e.Evaluate(in) {
			ids = append(ids, m.Rule.ID)
		}
		sort.Strings(ids)
		return ids
	}
	if got := fired("nmap", "/usr/bin/nmap", 0); !reflect.DeepEqual(got, []string{"g-list"}) {
		t.Errorf("nmap fired %v, want [g-list]", got)
	}
	if got := fired("nc", "/usr/bin/nc", 1000); !reflect.DeepEqual(got, []string{"g-equals", "g-negated", "g-none"}) {
		t.Errorf("nc fired %v, want [g-equals g-negated g-none]", got)
	}
	if got := fired("zmap", "/tmp/zmap", 1000); !reflect.DeepEqual(got, []string{"g-negated", "g-none", "g-or"}) {
		t.Errorf("zmap fired %v, want [g-negated g-none g-or]", got)
	}
}

func TestKernelKill(t *testing.T) {
	const head = `
lists:
  miners: [xmrig, minerd]
rules:
`
	rule := func(id, cond, extra string) string {
		return "  - id: " + id + "\n    title: t\n    description: d\n    severity: high\n    tactic: TA0040 Impact\n" +
			"    technique: T1496 Resource Hijacking\n    on: [exec]\n    response: kill\n    condition: " + cond + "\n    reason: \"'x'\"\n" + extra
	}
	file := head +
		rule("k-names", `process.name == 'vigil-marker' || process.name in miners || process.exe == '/opt/bad/tool'`, "") +
		rule("k-and", `process.name == 'nc' && process.uid != 0`, "") +
		rule("k-except", `process.name == 'nc'`, "    exceptions:\n      - name: root\n        condition: process.uid == 0\n")
	set, err := Compile(nil, []Source{{Name: "kill.yaml", Data: []byte(file)}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := set.Rule("k-names")
	names, exes, ok := r.KernelKill()
	if !ok || !reflect.DeepEqual(names, []string{"vigil-marker", "minerd", "xmrig"}) || !reflect.DeepEqual(exes, []string{"/opt/bad/tool"}) {
		t.Errorf("k-names: %v %v %v", names, exes, ok)
	}
	for _, id := range []string{"k-and", "k-except"} {
		r, _ := set.Rule(id)
		if names, exes, ok := r.KernelKill(); ok {
			t.Errorf("%s: kernel kill %v %v, want none (the kernel cannot check the rest of the rule)", id, names, exes)
		}
	}
}
