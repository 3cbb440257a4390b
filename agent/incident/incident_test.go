package incident

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

var (
	boot = time.Unix(1_700_000_000, 0)
	t0   = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
)

func attack(tacticID, tactic, techniqueID, technique string) *vigilv1.Attack {
	return &vigilv1.Attack{TacticId: tacticID, Tactic: tactic, TechniqueId: techniqueID, Technique: technique}
}

// proc is a cache entry outside any login session.
func proc(pid, ppid uint32, exe string) proctree.Entry {
	return proctree.Entry{PID: pid, PPID: ppid, StartTime: uint64(pid) * 1e9, Exe: exe, SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
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

func build(t *testing.T, b *Builder, sigs ...correlate.Signal) *vigilv1.Incident {
	t.Helper()
	for i := range sigs {
		if sigs[i].Score == 0 {
			sigs[i].Score = correlate.SeverityScore(sigs[i].Severity)
		}
		if sigs[i].Source == "" {
			sigs[i].Source = correlate.SourceRule
		}
	}
	inc, err := b.Build(correlate.Group{ID: "0195", Revision: 3, Signals: sigs})
	if err != nil {
		t.Fatal(err)
	}
	return inc
}

func TestBuildCarriesRuleProcessAndAncestry(t *testing.T) {
	b := &Builder{HostID: "h1", Hostname: "web1", BootTime: boot, UserName: func(uid uint32) string {
		return map[uint32]string{0: "root", 33: "www-data"}[uid]
	}}
	p := proctree.Entry{PID: 300, PPID: 200, StartTime: 5e9, UID: 33, SessionID: 12, Exe: "/usr/bin/dash", Args: []string{"sh", "-c", "id"}}
	login := &vigilv1.Login{SessionId: 12, Service: "sshd", User: "www-data", RemoteHost: "203.0.113.7"}
	anc := []proctree.Entry{
		{PID: 200, PPID: 1, UID: 33, Exe: "/usr/sbin/nginx", Args: []string{"nginx: worker process"}},
		{PID: 1, Exe: "/usr/lib/systemd/systemd", Args: []string{"/sbin/init"}},
	}
	sig := correlate.Signal{
		Time: boot.Add(time.Hour), RuleID: "shell-from-network-service", Title: "Shell spawned by a network-facing service",
		Severity: vigilv1.Severity_SEVERITY_HIGH, Attack: attack("TA0002", "Execution", "T1059.004", "Unix Shell"),
		Reason: "why", Repeats: 2, Process: &p, Ancestors: anc, Login: login,
	}
	inc := build(t, b, sig)
	if inc.Id != "0195" || inc.Revision != 3 {
		t.Errorf("id %q revision %d, want the group's 0195 and 3", inc.Id, inc.Revision)
	}
	if inc.HostId != "h1" || inc.Hostname != "web1" || inc.RuleId != "shell-from-network-service" ||
		inc.Severity != vigilv1.Severity_SEVERITY_HIGH || inc.Attack.TechniqueId != "T1059.004" || inc.Title != sig.Title {
		t.Errorf("header fields: %+v", inc)
	}
	if inc.Attack == sig.Attack {
		t.Error("attack is shared with the signal, want a copy")
	}
	if want := "why (seen 2 more times)"; inc.Description != want {
		t.Errorf("description %q, want %q", inc.Description, want)
	}
	if !inc.Time.AsTime().Equal(boot.Add(time.Hour)) {
		t.Errorf("time %v", inc.Time.AsTime())
	}
	got := inc.Process
	if got.Pid != 300 || got.Ppid != 200 || got.User != "www-data" || !slices.Equal(got.Args, []string{"sh", "-c", "id"}) ||
		!got.StartTime.AsTime().Equal(boot.Add(5*time.Second)) {
		t.Errorf("process %+v", got)
	}
	if inc.Login.GetSessionId() != 12 || inc.Login.GetRemoteHost() != "203.0.113.7" || got.SessionId != 12 {
		t.Errorf("login %v, session id %d; want the login of session 12", inc.Login, got.SessionId)
	}
	if len(inc.Ancestors) != 2 || inc.Ancestors[0].Exe != "/usr/sbin/nginx" || inc.Ancestors[1].Pid != 1 || inc.Ancestors[1].User != "root" {
		t.Errorf("ancestors %+v", inc.Ancestors)
	}
	if len(inc.Signals) != 1 {
		t.Fatalf("%d signals, want 1", len(inc.Signals))
	}
	s := inc.Signals[0]
	if s.Source != "rule" || s.RuleId != sig.RuleID || s.Pid != 300 || s.Exe != "/usr/bin/dash" || s.ParentExe != "/usr/sbin/nginx" ||
		s.Repeats != 2 || s.Score != 75 || !s.Time.AsTime().Equal(sig.Time) {
		t.Errorf("signal %+v", s)
	}
	if inc.Score != 75 {
		t.Errorf("score %v, want 75", inc.Score)
	}
}

func TestBuildRejectsEmptyGroup(t *testing.T) {
	if _, err := (&Builder{}).Build(correlate.Group{ID: "x"}); err == nil {
		t.Fatal("no error for a group without signals")
	}
}

func TestScore(t *testing.T) {
	for _, c := range []struct {
		scores []float64
		want   float64
	}{
		{[]float64{75}, 75},
		{[]float64{75, 50, 25}, 90.6}, // 100·(1 − 0.25·0.5·0.75) = 90.625
		{[]float64{90, 90}, 99},
		{[]float64{10, 10, 10}, 27.1}, // 100·(1 − 0.9³) = 27.1
		{[]float64{33.3, 120}, 100},
	} {
		var sigs []correlate.Signal
		for _, s := range c.scores {
			sigs = append(sigs, correlate.Signal{Score: s})
		}
		if got := Score(sigs); got != c.want {
			t.Errorf("Score(%v) = %v, want %v", c.scores, got, c.want)
		}
	}
}

// nginxTree is systemd → nginx (20, a listening service) → sh (30) → curl (40).
func nginxTree() (*proctree.Entry, []proctree.Entry) {
	pid1 := proc(1, 0, "/usr/lib/systemd/systemd")
	return lineage(pid1, proc(20, 1, "/usr/sbin/nginx"), proc(30, 20, "/usr/bin/dash"), proc(40, 30, "/usr/bin/curl"))
}

func TestCauseNetworkService(t *testing.T) {
	b := &Builder{BootTime: boot, Listening: func(pid uint32, start uint64) bool { return pid == 20 && start == 20e9 }}
	p, anc := nginxTree()
	p.Exe = "/usr/bin/curl"
	anc[0].Exe = "/bin/sh"
	inc := build(t, b, correlate.Signal{Time: t0, RuleID: "download-from-service", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Process: p, Ancestors: anc})
	if want := "The network service nginx (pid 20) started sh -> curl."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
	b.Listening = nil
	inc = build(t, b, correlate.Signal{Time: t0, RuleID: "x", Process: p, Ancestors: anc, RemoteAddr: "192.0.2.9"})
	if want := "The service nginx (pid 20) started sh -> curl, which talked to 192.0.2.9."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
}

func TestCauseParentChain(t *testing.T) {
	p, anc := lineage(proc(1, 0, "/sbin/init"), proc(899, 1, "/usr/sbin/cron"), proc(900, 899, "/usr/sbin/cron"),
		proc(901, 900, "/bin/sh"), proc(902, 901, "/tmp/x"))
	inc := build(t, &Builder{}, correlate.Signal{Time: t0, RuleID: "exec-from-tmp", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Process: p, Ancestors: anc})
	if want := "Started by cron (pid 900) -> sh -> /tmp/x."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
}

func TestCauseNamesLongChainsShortAndInASCII(t *testing.T) {
	top := []proctree.Entry{proc(1, 0, "/sbin/init"), proc(10, 1, "/usr/sbin/cron"), proc(11, 10, "/usr/sbin/cron")}
	for pid := uint32(12); pid < 18; pid++ {
		top = append(top, proc(pid, pid-1, "/usr/bin/bash"))
	}
	top = append(top, proc(18, 17, "/tmp/é\nx"))
	p, anc := lineage(top...)
	inc := build(t, &Builder{}, correlate.Signal{Time: t0, RuleID: "r", Process: p, Ancestors: anc})
	if want := "Started by cron (pid 11) -> bash -> bash -> ... -> bash -> /tmp/??x."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
}

// sshSession is an sshd login of alice from 127.0.0.1 (session 7, opened by
// pid 800) that ran bash → cat.
func sshSession() (*vigilv1.Login, *proctree.Entry, []proctree.Entry) {
	login := &vigilv1.Login{SessionId: 7, Service: "sshd", User: "alice", RemoteHost: "127.0.0.1",
		Time: timestamppb.New(t0.Add(2*time.Minute + 3*time.Second)), Pid: 800}
	inSession := func(e proctree.Entry) proctree.Entry { e.SessionID, e.LoginUID = 7, 1000; return e }
	p, anc := lineage(proc(1, 0, "/usr/lib/systemd/systemd"), proc(700, 1, "/usr/sbin/sshd"),
		inSession(proc(800, 700, "/usr/sbin/sshd")), inSession(proc(801, 800, "/usr/sbin/sshd")),
		inSession(proc(802, 801, "/usr/bin/bash")), inSession(proc(803, 802, "/usr/bin/cat")))
	return login, p, anc
}

func failedLogin(at time.Time) correlate.Signal {
	return correlate.Signal{Time: at, RuleID: "ssh-failed-logins", Title: "Failed sshd logins from one address",
		Severity: vigilv1.Severity_SEVERITY_MEDIUM, RemoteHost: "127.0.0.1", User: "alice", Service: "sshd", FailedLogins: 1}
}

func TestCauseLogin(t *testing.T) {
	login, p, anc := sshSession()
	fail := failedLogin(t0.Add(time.Minute))
	fail.FailedLogins, fail.Span = 5, 40*time.Second
	read := correlate.Signal{Time: t0.Add(2*time.Minute + 10*time.Second), RuleID: "shadow-file-read", Title: "Password hash file read",
		Severity: vigilv1.Severity_SEVERITY_HIGH, Reason: "cat read /etc/shadow", Process: p, Ancestors: anc, Login: login,
		File: "/etc/shadow", FileOp: correlate.FileRead}
	inc := build(t, &Builder{}, fail, read)
	if want := "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC, after 5 failed logins from that address, started bash -> cat, which read /etc/shadow."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
	if want := "cat read /etc/shadow; also: Failed sshd logins from one address"; inc.Description != want {
		t.Errorf("description %q, want %q", inc.Description, want)
	}
	if inc.RuleId != "shadow-file-read" || inc.Process.GetPid() != 803 || inc.Login.GetSessionId() != 7 || !inc.Time.AsTime().Equal(fail.Time) {
		t.Errorf("header: rule %q pid %d login %v time %v", inc.RuleId, inc.Process.GetPid(), inc.Login, inc.Time.AsTime())
	}

	// Without failures and without a file: the login and the chain only.
	read.File, read.FileOp = "", ""
	inc = build(t, &Builder{}, read)
	if want := "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC started bash -> cat."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
}

func TestCauseFailedLoginsOnly(t *testing.T) {
	fail := failedLogin(t0)
	fail.FailedLogins, fail.Repeats, fail.LastSeen = 5, 4, t0.Add(time.Minute)
	inc := build(t, &Builder{}, fail)
	if want := "5 failed sshd logins for alice from 127.0.0.1 within 1 minute."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
	if inc.Process != nil || inc.Signals[0].Pid != 0 || inc.Signals[0].RemoteHost != "127.0.0.1" {
		t.Errorf("host-level incident has process %v, signal %v", inc.Process, inc.Signals[0])
	}
	want := []*vigilv1.RecommendedAction{{Action: "block_source", Target: "addr:127.0.0.1", Reason: "5 failed logins came from 127.0.0.1."}}
	assertActions(t, inc, want)
}

func TestActionsKillResponse(t *testing.T) {
	p, anc := nginxTree()
	sig := correlate.Signal{Time: t0, RuleID: "reverse-shell", Severity: vigilv1.Severity_SEVERITY_CRITICAL, Response: correlate.ResponseKill,
		Process: p, Ancestors: anc}
	inc := build(t, &Builder{}, sig)
	assertActions(t, inc, []*vigilv1.RecommendedAction{
		{Action: "kill", Target: "pid:40", Reason: "Rule reverse-shell asks to kill curl (pid 40)."},
		{Action: "freeze", Target: "pid:40", Reason: "A critical signal came from curl (pid 40); freezing it and its descendants stops them and keeps them for analysis."},
	})

	// An exited process is no target, and its tree root is not either: the
	// root is often the session an operator works in.
	exited := *p
	exited.Exited = true
	sig.Process = &exited
	inc = build(t, &Builder{}, sig)
	assertActions(t, inc, nil)
}

func TestActionsRestoreWrittenCronFile(t *testing.T) {
	p, anc := lineage(proc(1, 0, "/sbin/init"), proc(50, 1, "/usr/bin/bash"), proc(51, 50, "/usr/bin/tee"))
	inc := build(t, &Builder{}, correlate.Signal{Time: t0, RuleID: "cron-file-written", Severity: vigilv1.Severity_SEVERITY_MEDIUM,
		Attack: attack("TA0003", "Persistence", "T1053.003", "Cron"), Process: p, Ancestors: anc,
		File: "/etc/cron.d/x", FileOp: correlate.FileWrite})
	assertActions(t, inc, []*vigilv1.RecommendedAction{
		{Action: "restore", Target: "file:/etc/cron.d/x", Reason: "tee (pid 51) wrote /etc/cron.d/x, which rule cron-file-written watches for persistence; restore it from a known-good copy."},
	})
	if inc.Signals[0].Object != "/etc/cron.d/x" {
		t.Errorf("signal object %q, want the file", inc.Signals[0].Object)
	}
}

func TestActionsRuleResponsesComeFirstWithoutDuplicates(t *testing.T) {
	p, anc := nginxTree()
	sigs := []correlate.Signal{
		{Time: t0, RuleID: "a", Severity: vigilv1.Severity_SEVERITY_HIGH, Response: correlate.ResponseRestore, Process: p, Ancestors: anc,
			File: "/etc/passwd", FileOp: correlate.FileWrite, Attack: attack("TA0003", "Persistence", "T1136", "Create Account")},
		{Time: t0.Add(time.Second), RuleID: "b", Severity: vigilv1.Severity_SEVERITY_LOW, Response: correlate.ResponseFreeze, Process: p, Ancestors: anc},
		{Time: t0.Add(2 * time.Second), RuleID: "c", Response: correlate.ResponseBlockSource, Process: p, Ancestors: anc, RemoteAddr: "192.0.2.9"},
		{Time: t0.Add(3 * time.Second), RuleID: "d", Response: correlate.ResponseIsolate},
		{Time: t0.Add(4 * time.Second), RuleID: "e", Response: correlate.ResponseQuarantine, Process: p, Ancestors: anc},
	}
	inc := build(t, &Builder{HostID: "h1"}, sigs...)
	var got []string
	for _, a := range inc.RecommendedActions {
		got = append(got, a.Action+" "+a.Target)
	}
	want := []string{"freeze pid:40", "quarantine pid:40", "block_source addr:192.0.2.9", "isolate host:h1", "restore file:/etc/passwd"}
	if !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
}

func TestRelatedLinksOtherProcessesToTheTree(t *testing.T) {
	p, anc := nginxTree()
	wget := proc(41, 30, "/usr/bin/wget")
	other := proc(60, 1, "/usr/sbin/cupsd")
	sigs := []correlate.Signal{
		{Time: t0, RuleID: "a", Severity: vigilv1.Severity_SEVERITY_HIGH, Process: p, Ancestors: anc},
		{Time: t0.Add(time.Second), RuleID: "b", Process: &wget, Ancestors: anc},
		{Time: t0.Add(2 * time.Second), RuleID: "c", Process: &wget, Ancestors: anc},
		{Time: t0.Add(3 * time.Second), RuleID: "d", Process: &other, Ancestors: anc[2:]},
	}
	inc := build(t, &Builder{}, sigs...)
	var got []uint32
	for _, r := range inc.Related {
		got = append(got, r.Pid)
	}
	if want := []uint32{41, 60}; !slices.Equal(got, want) {
		t.Errorf("related pids %v, want %v", got, want)
	}
}

func assertActions(t *testing.T, inc *vigilv1.Incident, want []*vigilv1.RecommendedAction) {
	t.Helper()
	if len(inc.RecommendedActions) != len(want) {
		t.Fatalf("actions %v, want %v", inc.RecommendedActions, want)
	}
	for i, a := range inc.RecommendedActions {
		if a.Action != want[i].Action || a.Target != want[i].Target || a.Reason != want[i].Reason {
			t.Errorf("action %d: %q %q %q, want %q %q %q", i, a.Action, a.Target, a.Reason, want[i].Action, want[i].Target, want[i].Reason)
		}
	}
}

// TestCauseLoginOfAnotherSignal: the shown process (the most severe signal)
// is outside any login, but a later signal came from a login session: the
// login is still the incident's entry point.
func TestCauseLoginOfAnotherSignal(t *testing.T) {
	login, p, anc := sshSession()
	harness, hanc := lineage(proc(1, 0, "/sbin/init"), proc(50, 1, "/opt/ci/runner"))
	write := correlate.Signal{Time: t0, RuleID: "passwd-file-modified", Title: "Account database written",
		Severity: vigilv1.Severity_SEVERITY_HIGH, Reason: "runner wrote /etc/passwd", Process: harness, Ancestors: hanc}
	run := correlate.Signal{Time: t0.Add(3 * time.Minute), RuleID: "exec-from-tmp", Title: "Program executed from /tmp",
		Severity: vigilv1.Severity_SEVERITY_MEDIUM, Reason: "executed /tmp/x", Process: p, Ancestors: anc, Login: login}
	inc := build(t, &Builder{}, write, run)
	if inc.RuleId != "passwd-file-modified" || inc.Process.GetPid() != 50 {
		t.Errorf("shown: rule %q pid %d, want the most severe signal's process 50", inc.RuleId, inc.Process.GetPid())
	}
	if inc.Login.GetSessionId() != 7 || inc.Login.GetRemoteHost() != "127.0.0.1" {
		t.Errorf("login %v, want the session of the exec-from-tmp signal", inc.Login)
	}
	if want := "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC started bash -> cat."; inc.Cause != want {
		t.Errorf("cause %q, want %q", inc.Cause, want)
	}
}

// TestActionsRestoreOnlyWhatHasASnapshot checks that restore is not
// recommended for a file the snapshot store cannot put back (a setuid bit
// set on a file in /tmp), by a rule's response or by the builder.
func TestActionsRestoreOnlyWhatHasASnapshot(t *testing.T) {
	p, anc := lineage(proc(1, 0, "/sbin/init"), proc(50, 1, "/usr/bin/bash"), proc(51, 50, "/usr/bin/chmod"))
	b := &Builder{Restorable: func(path string) bool { return path == "/etc/cron.d/x" }}
	inc := build(t, b,
		correlate.Signal{Time: t0, RuleID: "setuid-bit-set", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Response: correlate.ResponseRestore,
			Attack: attack("TA0004", "Privilege Escalation", "T1548.001", "Setuid and Setgid"), Process: p, Ancestors: anc,
			File: "/tmp/suid", FileOp: correlate.FileWrite},
		correlate.Signal{Time: t0.Add(time.Second), RuleID: "cron-file-written", Severity: vigilv1.Severity_SEVERITY_MEDIUM,
			Attack: attack("TA0003", "Persistence", "T1053.003", "Cron"), Process: p, Ancestors: anc,
			File: "/etc/cron.d/x", FileOp: correlate.FileWrite})
	assertActions(t, inc, []*vigilv1.RecommendedAction{
		{Action: "restore", Target: "file:/etc/cron.d/x", Reason: "chmod (pid 51) wrote /etc/cron.d/x, which rule cron-file-written watches for persistence; restore it from a known-good copy."},
	})
}
