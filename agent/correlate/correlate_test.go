package correlate_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// newCorrelator returns a correlator with ids "inc-1", "inc-2", … so that
// tests can name incidents.
func newCorrelator(t *testing.T, opt correlate.Options) *correlate.Correlator {
	t.Helper()
	n := 0
	opt.NewID = func() (string, error) { n++; return fmt.Sprintf("inc-%d", n), nil }
	c, err := correlate.New(&incident.Builder{HostID: "h1", Hostname: "web1"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func add(t *testing.T, c *correlate.Correlator, s correlate.Signal) *vigilv1.Incident {
	t.Helper()
	inc, err := c.Add(s)
	if err != nil {
		t.Fatalf("add %s: %v", s.RuleID, err)
	}
	return inc
}

func proc(pid, ppid uint32, exe string) proctree.Entry {
	return proctree.Entry{PID: pid, PPID: ppid, StartTime: uint64(pid) * 1e9, Exe: exe, SessionID: event.NoSessionID}
}

// lineage returns the process and its ancestors (parent first) from
// entries listed topmost first.
func lineage(top ...proctree.Entry) (*proctree.Entry, []proctree.Entry) {
	p := top[len(top)-1]
	var anc []proctree.Entry
	for i := len(top) - 2; i >= 0; i-- {
		anc = append(anc, top[i])
	}
	return &p, anc
}

// session is an sshd login of alice from 127.0.0.1 at 10:02:03 (audit
// session 7, opened by the per-connection sshd 800).
var session = &vigilv1.Login{SessionId: 7, Service: "sshd", User: "alice", RemoteHost: "127.0.0.1",
	Time: timestamppb.New(t0.Add(2*time.Minute + 3*time.Second)), Pid: 800}

// inSession returns pid's process in the ssh session: systemd → sshd
// listener (700) → sshd (800) → sshd (801) → bash (802) → exe.
func inSession(pid uint32, exe string) (*proctree.Entry, []proctree.Entry) {
	s := func(e proctree.Entry) proctree.Entry { e.SessionID = 7; return e }
	return lineage(proc(1, 0, "/usr/lib/systemd/systemd"), proc(700, 1, "/usr/sbin/sshd"), s(proc(800, 700, "/usr/sbin/sshd")),
		s(proc(801, 800, "/usr/sbin/sshd")), s(proc(802, 801, "/usr/bin/bash")), s(proc(pid, 802, exe)))
}

func shadowRead(at time.Time) correlate.Signal {
	p, anc := inSession(803, "/usr/bin/cat")
	return correlate.Signal{Time: at, RuleID: "shadow-file-read", Title: "Password hash file read", Severity: vigilv1.Severity_SEVERITY_HIGH,
		Reason: "cat read /etc/shadow", Process: p, Ancestors: anc, Login: session, File: "/etc/shadow", FileOp: correlate.FileRead}
}

func failedLogin(at time.Time) correlate.Signal {
	return correlate.Signal{Time: at, RuleID: "ssh-failed-login", Title: "Failed sshd login", Severity: vigilv1.Severity_SEVERITY_MEDIUM,
		Reason: "sshd refused a password for alice", RemoteHost: "127.0.0.1", User: "alice", Service: "sshd", FailedLogins: 1}
}

func TestSameSessionIsOneIncident(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	p, anc := inSession(810, "/usr/bin/id")
	first := add(t, c, correlate.Signal{Time: t0.Add(3 * time.Minute), RuleID: "discovery", Title: "User discovery",
		Severity: vigilv1.Severity_SEVERITY_LOW, Reason: "id ran", Process: p, Ancestors: anc, Login: session})
	second := add(t, c, shadowRead(t0.Add(4*time.Minute)))
	if first.Id != "inc-1" || first.Revision != 1 || second.Id != "inc-1" || second.Revision != 2 {
		t.Fatalf("incidents %s rev %d and %s rev %d, want inc-1 revisions 1 and 2", first.Id, first.Revision, second.Id, second.Revision)
	}
	if len(second.Signals) != 2 || second.Signals[0].RuleId != "discovery" || second.Signals[1].RuleId != "shadow-file-read" {
		t.Fatalf("signals %v, want discovery then shadow-file-read", second.Signals)
	}
	if second.RuleId != "shadow-file-read" || second.Severity != vigilv1.Severity_SEVERITY_HIGH || second.Process.Pid != 803 ||
		!second.Time.AsTime().Equal(t0.Add(3*time.Minute)) {
		t.Errorf("header: rule %s severity %v pid %d time %v", second.RuleId, second.Severity, second.Process.Pid, second.Time.AsTime())
	}
	if want := "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC started bash -> cat, which read /etc/shadow."; second.Cause != want {
		t.Errorf("cause %q, want %q", second.Cause, want)
	}
	if want := 81.3; second.Score != want { // 100·(1 − 0.75·0.25)
		t.Errorf("score %v, want %v", second.Score, want)
	}
}

func TestFailedLoginsThenShadowReadFromTheSameAddress(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	var incs []*vigilv1.Incident
	for i := range 5 {
		if inc := add(t, c, failedLogin(t0.Add(time.Minute+time.Duration(i)*15*time.Second))); inc != nil {
			incs = append(incs, inc)
		}
	}
	if len(incs) != 1 || incs[0].Revision != 1 {
		t.Fatalf("%d incidents for 5 identical failed logins, want one (revision 1): %v", len(incs), incs)
	}
	if want := "1 failed sshd login for alice from 127.0.0.1."; incs[0].Cause != want {
		t.Errorf("first cause %q, want %q", incs[0].Cause, want)
	}
	inc := add(t, c, shadowRead(t0.Add(2*time.Minute+10*time.Second)))
	if inc == nil || inc.Id != incs[0].Id || inc.Revision != 2 {
		t.Fatalf("shadow read gave %v, want revision 2 of %s", inc, incs[0].Id)
	}
	if c.Len() != 1 {
		t.Errorf("%d open groups, want 1", c.Len())
	}
	if want := "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC, after 5 failed logins from that address, started bash -> cat, which read /etc/shadow."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
	if len(inc.Signals) != 2 || inc.Signals[0].Repeats != 4 || inc.Signals[0].Pid != 0 || inc.Signals[1].Pid != 803 {
		t.Errorf("signals %v, want the failed logins (4 repeats) then the read", inc.Signals)
	}
	if inc.RuleId != "shadow-file-read" || inc.Login.GetRemoteHost() != "127.0.0.1" {
		t.Errorf("rule %q login %v", inc.RuleId, inc.Login)
	}
	var acts []string
	for _, a := range inc.RecommendedActions {
		acts = append(acts, a.Action+" "+a.Target)
	}
	if want := "[freeze pid:803 block_source addr:127.0.0.1]"; fmt.Sprint(acts) != want {
		t.Errorf("actions %v, want %s", acts, want)
	}
}

func TestUnrelatedTreesAreTwoIncidents(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	p1, a1 := lineage(proc(1, 0, "/sbin/init"), proc(20, 1, "/usr/sbin/nginx"), proc(30, 20, "/bin/sh"))
	p2, a2 := lineage(proc(1, 0, "/sbin/init"), proc(899, 1, "/usr/sbin/cron"), proc(900, 899, "/usr/sbin/cron"), proc(901, 900, "/tmp/x"))
	i1 := add(t, c, correlate.Signal{Time: t0, RuleID: "shell-from-network-service", Severity: vigilv1.Severity_SEVERITY_HIGH, Process: p1, Ancestors: a1})
	i2 := add(t, c, correlate.Signal{Time: t0.Add(time.Second), RuleID: "exec-from-tmp", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Process: p2, Ancestors: a2})
	if i1.Id != "inc-1" || i2.Id != "inc-2" || i1.Revision != 1 || i2.Revision != 1 {
		t.Fatalf("incidents %s/%d and %s/%d, want inc-1/1 and inc-2/1", i1.Id, i1.Revision, i2.Id, i2.Revision)
	}
	if want := "Started by cron (pid 900) -> /tmp/x."; i2.Cause != want {
		t.Errorf("cause %q, want %q", i2.Cause, want)
	}
	// A second process under the same nginx joins the first incident.
	p3, a3 := lineage(proc(1, 0, "/sbin/init"), proc(20, 1, "/usr/sbin/nginx"), proc(31, 20, "/bin/sh"), proc(32, 31, "/usr/bin/curl"))
	i3 := add(t, c, correlate.Signal{Time: t0.Add(2 * time.Second), RuleID: "download", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Process: p3, Ancestors: a3})
	if i3.Id != "inc-1" || i3.Revision != 2 {
		t.Errorf("second nginx child gave %s/%d, want inc-1/2", i3.Id, i3.Revision)
	}
	if len(i3.Related) != 2 || i3.Related[0].Pid != 32 || i3.Related[1].Pid != 31 {
		t.Errorf("related %v, want curl 32 and its parent sh 31", i3.Related)
	}
}

func TestWindowClosesGroup(t *testing.T) {
	c := newCorrelator(t, correlate.Options{Window: 5 * time.Minute})
	a := add(t, c, shadowRead(t0))
	b := add(t, c, withRule(shadowRead(t0.Add(5*time.Minute)), "r2"))
	if b.Id != a.Id || b.Revision != 2 {
		t.Fatalf("signal at the window's end gave %s/%d, want %s/2", b.Id, b.Revision, a.Id)
	}
	d := add(t, c, withRule(shadowRead(t0.Add(10*time.Minute+time.Second)), "r3"))
	if d.Id == a.Id || d.Revision != 1 || len(d.Signals) != 1 {
		t.Errorf("signal after the window gave %s/%d with %d signals, want a new incident", d.Id, d.Revision, len(d.Signals))
	}
}

func TestRepeatFoldsWithoutRevision(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	first := add(t, c, shadowRead(t0))
	for i := 1; i <= 3; i++ {
		if inc := add(t, c, shadowRead(t0.Add(time.Duration(i)*time.Second))); inc != nil {
			t.Fatalf("repeat %d gave revision %d, want none", i, inc.Revision)
		}
	}
	// Flush before the window ends closes nothing.
	if incs, err := c.Flush(t0.Add(5 * time.Minute)); err != nil || len(incs) != 0 {
		t.Fatalf("early flush gave %v, %v", incs, err)
	}
	incs, err := c.Flush(t0.Add(3*time.Second + 10*time.Minute + time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 || incs[0].Id != first.Id || incs[0].Revision != 2 || len(incs[0].Signals) != 1 || incs[0].Signals[0].Repeats != 3 {
		t.Fatalf("final revision %v, want %s revision 2 with one signal repeated 3 times", incs, first.Id)
	}
	if want := "cat read /etc/shadow (seen 3 more times)"; incs[0].Description != want {
		t.Errorf("description %q, want %q", incs[0].Description, want)
	}
	if c.Len() != 0 {
		t.Errorf("%d groups open after the window, want 0", c.Len())
	}
}

func TestRepeatIsCarriedByTheNextRevision(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	add(t, c, shadowRead(t0))
	if inc := add(t, c, shadowRead(t0.Add(time.Second))); inc != nil {
		t.Fatalf("repeat gave revision %d", inc.Revision)
	}
	inc := add(t, c, withRule(shadowRead(t0.Add(2*time.Second)), "other"))
	if inc.Revision != 2 || inc.Signals[0].Repeats != 1 {
		t.Fatalf("revision %d, repeats %d; want 2 and 1", inc.Revision, inc.Signals[0].Repeats)
	}
	incs, err := c.Close()
	if err != nil || len(incs) != 0 {
		t.Errorf("close gave %v, %v; want nothing, every repeat was sent", incs, err)
	}
}

func TestSignalLinkingTwoGroupsMergesThem(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	fail := add(t, c, failedLogin(t0))
	p, anc := lineage(proc(1, 0, "/sbin/init"), proc(20, 1, "/usr/sbin/nginx"), proc(30, 20, "/bin/sh"))
	web := add(t, c, correlate.Signal{Time: t0.Add(time.Second), RuleID: "shell-from-network-service", Severity: vigilv1.Severity_SEVERITY_HIGH, Process: p, Ancestors: anc})
	if fail.Id == web.Id {
		t.Fatal("unrelated signals share an incident")
	}
	// A process of the nginx tree in a session from the failing address links both.
	q, qa := lineage(proc(1, 0, "/sbin/init"), proc(20, 1, "/usr/sbin/nginx"), proc(40, 20, "/usr/bin/su"))
	q.SessionID = 9
	inc := add(t, c, correlate.Signal{Time: t0.Add(2 * time.Second), RuleID: "su-from-service", Severity: vigilv1.Severity_SEVERITY_MEDIUM,
		Process: q, Ancestors: qa, Login: &vigilv1.Login{SessionId: 9, Service: "su", User: "root", RemoteHost: "127.0.0.1"}})
	if inc.Id != fail.Id || inc.Revision != 2 || len(inc.Signals) != 3 || c.Len() != 1 {
		t.Fatalf("merge gave %s/%d with %d signals and %d groups, want %s/2 with 3 signals in 1 group", inc.Id, inc.Revision, len(inc.Signals), c.Len(), fail.Id)
	}
	if inc.RuleId != "shell-from-network-service" {
		t.Errorf("rule %q, want the high-severity one", inc.RuleId)
	}
}

func TestBounds(t *testing.T) {
	c := newCorrelator(t, correlate.Options{MaxGroups: 2, MaxSignals: 2})
	for i := range 3 {
		p, anc := lineage(proc(1, 0, "/sbin/init"), proc(uint32(100+i), 1, "/usr/sbin/svc"))
		add(t, c, correlate.Signal{Time: t0.Add(time.Duration(i) * time.Second), RuleID: "r", Process: p, Ancestors: anc})
	}
	if c.Len() != 2 {
		t.Errorf("%d groups open, want at most 2", c.Len())
	}
	p, anc := lineage(proc(1, 0, "/sbin/init"), proc(102, 1, "/usr/sbin/svc"))
	add(t, c, correlate.Signal{Time: t0.Add(4 * time.Second), RuleID: "r2", Process: p, Ancestors: anc})
	if inc := add(t, c, correlate.Signal{Time: t0.Add(5 * time.Second), RuleID: "r3", Process: p, Ancestors: anc}); inc != nil {
		t.Errorf("a signal beyond MaxSignals gave revision %d", inc.Revision)
	}
	incs, err := c.Close()
	if err != nil || len(incs) != 1 || len(incs[0].Signals) != 2 || incs[0].Description != "r; also 1 more signal" {
		t.Errorf("close gave %v, %v; want one final revision with 2 signals and 1 omitted", incs, err)
	}
}

func TestInvalidSignals(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	for _, s := range []correlate.Signal{
		{RuleID: "r"},
		{Time: t0},
		{Time: t0, RuleID: "r", Source: "guess"},
	} {
		if _, err := c.Add(s); !errors.Is(err, correlate.ErrInvalidSignal) {
			t.Errorf("Add(%+v) = %v, want ErrInvalidSignal", s, err)
		}
	}
	if _, err := correlate.New(nil, correlate.Options{}); !errors.Is(err, correlate.ErrNoBuilder) {
		t.Errorf("New(nil) = %v, want ErrNoBuilder", err)
	}
}

func TestDefaultScoreAndID(t *testing.T) {
	c, err := correlate.New(&incident.Builder{}, correlate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inc := add(t, c, correlate.Signal{Time: t0, RuleID: "r", Severity: vigilv1.Severity_SEVERITY_CRITICAL})
	if len(inc.Id) != 36 || inc.Id[14] != '7' || inc.Score != 90 || inc.Signals[0].Source != "rule" {
		t.Errorf("id %q score %v source %q; want a UUIDv7, 90, rule", inc.Id, inc.Score, inc.Signals[0].Source)
	}
}

func TestTreeRoot(t *testing.T) {
	pid1 := proc(1, 0, "/usr/lib/systemd/systemd")
	for _, c := range []struct {
		name string
		top  []proctree.Entry
		want uint32 // 0: none
	}{
		{"ssh connection", []proctree.Entry{pid1, proc(700, 1, "/usr/sbin/sshd"), proc(800, 700, "/usr/sbin/sshd"), proc(802, 800, "/usr/bin/bash")}, 800},
		{"cron job", []proctree.Entry{pid1, proc(899, 1, "/usr/sbin/cron"), proc(900, 899, "/usr/sbin/cron"), proc(901, 900, "/bin/sh")}, 900},
		{"container", []proctree.Entry{pid1, proc(50, 1, "/usr/bin/containerd-shim-runc-v2"), proc(51, 50, "/usr/bin/tini"), proc(52, 51, "/usr/sbin/nginx"), proc(53, 52, "/bin/sh")}, 52},
		{"service", []proctree.Entry{pid1, proc(20, 1, "/usr/sbin/nginx")}, 20},
		{"user manager", []proctree.Entry{pid1, proc(60, 1, "/usr/lib/systemd/systemd"), proc(61, 60, "/usr/bin/tmux"), proc(62, 61, "/usr/bin/bash")}, 61},
		{"sshd listener", []proctree.Entry{pid1, proc(700, 1, "/usr/sbin/sshd")}, 0},
		{"pid 1", []proctree.Entry{pid1}, 0},
		{"ancestry unknown", []proctree.Entry{proc(900, 899, "/usr/sbin/cron"), proc(901, 900, "/bin/sh")}, 900},
	} {
		p, anc := lineage(c.top...)
		s := correlate.Signal{Process: p, Ancestors: anc}
		root, ok := s.TreeRoot()
		if got := map[bool]uint32{true: root.PID}[ok]; got != c.want {
			t.Errorf("%s: root %d, want %d", c.name, got, c.want)
		}
	}
}

// withRule returns s as a signal of another rule, so that it is no repeat.
func withRule(s correlate.Signal, id string) correlate.Signal {
	s.RuleID = id
	return s
}

// TestAddAction: a response joins the audit trail of an open incident in a
// new revision, which later revisions keep; a closed one is left to the caller.
func TestAddAction(t *testing.T) {
	c := newCorrelator(t, correlate.Options{})
	first := add(t, c, shadowRead(t0))
	rec := &vigilv1.ActionRecord{Id: "a1", Action: "freeze", Target: "pid:803", Result: "done"}
	inc, ok, err := c.AddAction(first.GetId(), rec)
	if err != nil || !ok || inc.GetRevision() != 2 || len(inc.GetActions()) != 1 || inc.GetActions()[0].GetId() != "a1" {
		t.Fatalf("AddAction: %v %v %v", inc, ok, err)
	}
	next := add(t, c, failedLogin(t0.Add(time.Second)))
	if next.GetRevision() != 3 || len(next.GetActions()) != 1 {
		t.Errorf("next revision %d with %d actions, want 3 with the action kept", next.GetRevision(), len(next.GetActions()))
	}
	if _, ok, err := c.AddAction("0195ffff-0000-7000-8000-000000000000", rec); ok || err != nil {
		t.Errorf("AddAction on an unknown incident: ok %v err %v", ok, err)
	}
}
