package feedback

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

var labelled = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// story is an incident with a rule signal on a process, a host-level
// signal and an anomaly signal.
func story() *vigilv1.Incident {
	return &vigilv1.Incident{
		Id:        "0193a000-0000-7000-8000-000000000001",
		RuleId:    "exec-from-tmp",
		Process:   &vigilv1.Process{Pid: 40, Exe: "/tmp/build/run"},
		Ancestors: []*vigilv1.Process{{Pid: 30, Exe: "/usr/bin/make"}, {Pid: 1, Exe: "/usr/lib/systemd/systemd"}},
		Signals: []*vigilv1.Signal{
			{Source: "rule", RuleId: "ssh-brute-force", RemoteHost: "10.0.0.5"},
			{Source: "rule", RuleId: "exec-from-tmp", Pid: 40, Exe: "/tmp/build/run", Object: "/tmp/build/run"},
			{Source: "rule", RuleId: "exec-from-tmp", Pid: 40, Exe: "/tmp/build/run", Object: "/tmp/build/run2"},
			{Source: "anomaly", RuleId: "anomaly.rare-child", Pid: 30, Exe: "/usr/bin/make", ParentExe: "/usr/bin/bash", Object: "/tmp/build/run"},
		},
	}
}

func TestFromIncident(t *testing.T) {
	got := FromIncident(story(), "alice", "our build", labelled)
	id := "0193a000-0000-7000-8000-000000000001"
	want := []Suppression{
		{IncidentID: id, RuleID: "ssh-brute-force", Source: "rule", RemoteHost: "10.0.0.5", Added: labelled, By: "alice", Note: "our build"},
		// Two signals of one rule on one program under one parent: one suppression.
		{IncidentID: id, RuleID: "exec-from-tmp", Source: "rule", Exe: "/tmp/build/run", ParentExe: "/usr/bin/make", Added: labelled, By: "alice", Note: "our build"},
		{IncidentID: id, RuleID: "anomaly.rare-child", Source: "anomaly", Exe: "/usr/bin/make", ParentExe: "/usr/bin/bash", Object: "/tmp/build/run", Added: labelled, By: "alice", Note: "our build"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromIncident:\n got %+v\nwant %+v", got, want)
	}
	set := NewSet(got)
	cases := []struct {
		key  Key
		want string // rule id of the matching suppression, "" for none
	}{
		{Key{RuleID: "exec-from-tmp", Exe: "/tmp/build/run", ParentExe: "/usr/bin/make", Object: "/tmp/build/run"}, "exec-from-tmp"},
		{Key{RuleID: "exec-from-tmp", Exe: "/tmp/build/run", ParentExe: "/usr/bin/bash"}, ""},
		{Key{RuleID: "exec-from-tmp", Exe: "/tmp/evil", ParentExe: "/usr/bin/make"}, ""},
		{Key{RuleID: "ssh-brute-force", RemoteHost: "10.0.0.5"}, "ssh-brute-force"},
		{Key{RuleID: "ssh-brute-force", RemoteHost: "10.0.0.6"}, ""},
		{Key{RuleID: "anomaly.rare-child", Exe: "/usr/bin/make", ParentExe: "/usr/bin/bash", Object: "/tmp/build/run"}, "anomaly.rare-child"},
		{Key{RuleID: "anomaly.rare-child", Exe: "/usr/bin/make", ParentExe: "/usr/bin/bash", Object: "/bin/sh"}, ""},
	}
	for _, c := range cases {
		s := set.Suppressed(c.key)
		got := ""
		if s != nil {
			got = s.RuleID
		}
		if got != c.want {
			t.Errorf("Suppressed(%+v) = %q, want %q", c.key, got, c.want)
		}
	}
}

func TestFromIncidentWithoutTimeline(t *testing.T) {
	inc := &vigilv1.Incident{
		Id: "0193a000-0000-7000-8000-000000000002", RuleId: "memfd-exec",
		Process:   &vigilv1.Process{Pid: 7, Exe: "/memfd:x"},
		Ancestors: []*vigilv1.Process{{Pid: 6, Exe: "/usr/bin/python3"}},
	}
	got := FromIncident(inc, "", "", labelled)
	want := []Suppression{{IncidentID: inc.Id, RuleID: "memfd-exec", Source: "rule", Exe: "/memfd:x", ParentExe: "/usr/bin/python3", Added: labelled}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if d := got[0].Describe(); d != "memfd-exec by /memfd:x under /usr/bin/python3" {
		t.Errorf("Describe = %q", d)
	}
}

func TestAppendLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", FileName)
	if list, err := Load(path); err != nil || list != nil {
		t.Fatalf("Load of a missing file: %v, %v", list, err)
	}
	first := FromIncident(story(), "alice", "", labelled)
	if n, err := Append(path, first); err != nil || n != 3 {
		t.Fatalf("Append: %d, %v; want 3 new", n, err)
	}
	// Labelling the same incident again adds nothing.
	if n, err := Append(path, first); err != nil || n != 0 {
		t.Fatalf("Append again: %d, %v; want 0 new", n, err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, first) {
		t.Fatalf("Load:\n got %+v\nwant %+v", got, first)
	}
	for _, bad := range []struct{ content, want string }{
		{`{"version":1,"suppressions":[{"rule_id":"x","colour":"red"}]}`, `json: unknown field "colour"`},
		{`{"version":9,"suppressions":[]}`, "version 9, want 1"},
		{`{"version":1,"suppressions":[{"exe":"/bin/x"}]}`, "suppression 1 has no rule_id"},
		{`{"version":1,`, "unexpected EOF"},
	} {
		if err := os.WriteFile(path, []byte(bad.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s): %v, want an error naming the file and %q", bad.content, err, bad.want)
		}
	}
}

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	j := &Journal{Path: filepath.Join(dir, JournalName), MaxBytes: 600}
	inc := story()
	inc.Revision = 1
	if err := j.Add(inc); err != nil {
		t.Fatal(err)
	}
	other := &vigilv1.Incident{Id: "0193a000-0000-7000-8000-000000000003", RuleId: "network-scanner", Revision: 1}
	if err := j.Add(other); err != nil {
		t.Fatal(err)
	}
	second := story()
	second.Revision = 2
	second.Title = "second revision"
	if err := j.Add(second); err != nil {
		t.Fatal(err)
	}
	// Small MaxBytes: the journal rotated, and Find still reads both files.
	if _, err := os.Stat(j.Path + ".1"); err != nil {
		t.Fatalf("journal did not rotate: %v", err)
	}
	got, err := j.Find(inc.Id)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetRevision() != 2 || got.GetTitle() != "second revision" {
		t.Errorf("Find = revision %d %q, want the latest revision 2", got.GetRevision(), got.GetTitle())
	}
	if got, err := j.Find(other.Id); err != nil || got.GetRuleId() != "network-scanner" {
		t.Errorf("Find other = %v, %v", got, err)
	}
	_, err = j.Find("0193a000-0000-7000-8000-00000000dead")
	if !errors.Is(err, ErrUnknownIncident) {
		t.Errorf("Find of an unknown id: %v, want ErrUnknownIncident", err)
	}
}

func TestFileStateChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var st FileState
	if st.Changed(path) {
		t.Error("a missing file changed")
	}
	if _, err := Append(path, FromIncident(story(), "", "", labelled)); err != nil {
		t.Fatal(err)
	}
	if !st.Changed(path) {
		t.Error("a new file did not change")
	}
	if st.Changed(path) {
		t.Error("an untouched file changed")
	}
	more := []Suppression{{RuleID: "memfd-exec", Exe: "/memfd:y", Added: labelled}}
	if _, err := Append(path, more); err != nil {
		t.Fatal(err)
	}
	if !st.Changed(path) {
		t.Error("a replaced file did not change")
	}
}

// A benign label on a signal whose parent (or executable) was unknown must
// not suppress the rule under every parent: the unknown parent is recorded
// as Unknown, which matches only a signal whose parent is unknown too.
func TestFromIncidentUnknownParent(t *testing.T) {
	inc := &vigilv1.Incident{
		Id: "0193a000-0000-7000-8000-000000000003", RuleId: "reverse-shell",
		Process:   &vigilv1.Process{Pid: 50, Exe: "/usr/bin/python3.11"},
		Ancestors: []*vigilv1.Process{{Pid: 1}},
		Signals: []*vigilv1.Signal{
			{Source: "rule", RuleId: "reverse-shell", Pid: 50, Exe: "/usr/bin/python3.11"},
			{Source: "rule", RuleId: "memfd-exec", Pid: 51},
		},
	}
	got := FromIncident(inc, "", "", labelled)
	want := []Suppression{
		{IncidentID: inc.Id, RuleID: "reverse-shell", Source: "rule", Exe: "/usr/bin/python3.11", ParentExe: "(unknown)", Added: labelled},
		{IncidentID: inc.Id, RuleID: "memfd-exec", Source: "rule", Exe: "(unknown)", ParentExe: "(unknown)", Added: labelled},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if d := got[0].Describe(); d != "reverse-shell by /usr/bin/python3.11 under an unknown parent" {
		t.Errorf("Describe = %q", d)
	}
	set := NewSet(got)
	cases := []struct {
		key  Key
		want string
	}{
		{Key{RuleID: "reverse-shell", Exe: "/usr/bin/python3.11"}, "reverse-shell"},
		{Key{RuleID: "reverse-shell", Exe: "/usr/bin/python3.11", ParentExe: "/usr/bin/bash"}, ""},
		{Key{RuleID: "reverse-shell", Exe: "/usr/bin/python3.11", ParentExe: "/usr/sbin/sshd"}, ""},
		{Key{RuleID: "memfd-exec"}, "memfd-exec"},
		{Key{RuleID: "memfd-exec", Exe: "/memfd:x"}, ""},
		{Key{RuleID: "memfd-exec", ParentExe: "/usr/bin/python3"}, ""},
	}
	for _, c := range cases {
		got := ""
		if s := set.Suppressed(c.key); s != nil {
			got = s.RuleID
		}
		if got != c.want {
			t.Errorf("Suppressed(%+v) = %q, want %q", c.key, got, c.want)
		}
	}
}

// A feedback file written before Unknown existed (no parent_exe) still
// loads, with its old meaning.
func TestLoadOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	old := `{"version": 1, "suppressions": [{"incident_id": "x", "rule_id": "reverse-shell", "exe": "/usr/bin/python3.11", "source": "rule", "added": "2026-12-03T10:00:00Z"}]}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Suppression{{IncidentID: "x", RuleID: "reverse-shell", Exe: "/usr/bin/python3.11", Source: "rule", Added: labelled}}
	if !reflect.DeepEqual(list, want) {
		t.Fatalf("got %+v, want %+v", list, want)
	}
}
