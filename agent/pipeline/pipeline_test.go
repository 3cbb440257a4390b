package pipeline

import (
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/replay"
	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

const normalRecording = "../../testdata/recordings/normal-shell.jsonl"

// collector keeps the latest revision of every incident, in order of appearance.
type collector struct {
	order  []string
	latest map[string]*vigilv1.Incident
}

func (c *collector) emit(inc *vigilv1.Incident) {
	if c.latest == nil {
		c.latest = map[string]*vigilv1.Incident{}
	}
	if _, ok := c.latest[inc.GetId()]; !ok {
		c.order = append(c.order, inc.GetId())
	}
	c.latest[inc.GetId()] = inc
}

func (c *collector) incidents() []*vigilv1.Incident {
	var out []*vigilv1.Incident
	for _, id := range c.order {
		out = append(out, c.latest[id])
	}
	return out
}

func newPipeline(t *testing.T, learning time.Duration, c *collector) *Pipeline {
	t.Helper()
	set, err := rules.Load()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{
		Builder:        &incident.Builder{HostID: "test", Hostname: "test"},
		Engine:         rules.NewEngine(set, rules.Options{}),
		Anomaly:        true,
		LearningPeriod: learning,
		Emit:           c.emit,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// shifted returns the events with every time moved by d, as if the same
// activity happened again later.
func shifted(t *testing.T, events []any, d time.Duration) []any {
	t.Helper()
	out := make([]any, 0, len(events))
	for _, ev := range events {
		v := reflect.ValueOf(ev).Elem()
		cp := reflect.New(v.Type())
		cp.Elem().Set(v)
		f := cp.Elem().FieldByName("Time")
		f.Set(reflect.ValueOf(f.Interface().(time.Time).Add(d)))
		out = append(out, cp.Interface())
	}
	return out
}

// span returns the first and last event times.
func span(t *testing.T, events []any) (time.Time, time.Time) {
	t.Helper()
	var first, last time.Time
	for _, ev := range events {
		_, at, ok := event.Header(ev)
		if !ok {
			t.Fatalf("not an event: %T", ev)
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return first, last
}

// lastExec returns the last exec of exe in events.
func lastExec(t *testing.T, events []any, exe string) *event.Exec {
	t.Helper()
	var found *event.Exec
	for _, ev := range events {
		if x, ok := ev.(*event.Exec); ok && x.Exe == exe {
			found = x
		}
	}
	if found == nil {
		t.Fatalf("no exec of %s in the recording", exe)
	}
	return found
}

// TestAnomalyFlagsOnlyTheInjectedBehaviour learns a baseline from a
// recorded normal workload, replays the same workload a day later with one
// rare behaviour injected (the shell that ran uname, id, ls... also starts
// whoami), and checks that this behaviour alone is flagged, with its reason.
func TestAnomalyFlagsOnlyTheInjectedBehaviour(t *testing.T) {
	normal, err := replay.ReadFile(normalRecording)
	if err != nil {
		t.Fatal(err)
	}
	first, last := span(t, normal)
	var c collector
	p := newPipeline(t, last.Sub(first)+time.Second, &c)
	for _, ev := range normal {
		p.Handle(ev)
	}
	if !p.Learning() {
		t.Fatal("baseline stopped learning within its learning period")
	}
	if got := c.incidents(); len(got) != 0 {
		t.Fatalf("the normal workload raised %d incidents, first: %s %s", len(got), got[0].GetRuleId(), got[0].GetDescription())
	}

	again := shifted(t, normal, 24*time.Hour)
	uname := lastExec(t, again, "/usr/bin/uname")
	whoami := *uname
	whoami.Process.PID, whoami.Process.TID = 999999, 999999
	whoami.Process.StartTime += 1000
	whoami.Process.Comm = "whoami"
	whoami.Exe, whoami.Filename = "/usr/bin/whoami", "/usr/bin/whoami"
	whoami.Args = []string{"whoami"}
	injected := false
	for _, ev := range again {
		p.Handle(ev)
		if ev == any(uname) {
			p.Handle(&whoami)
			injected = true
		}
	}
	if !injected || p.Learning() {
		t.Fatalf("injected %v, learning %v", injected, p.Learning())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := c.incidents()
	if len(got) != 1 {
		var s []string
		for _, inc := range got {
			for _, sig := range inc.GetSignals() {
				s = append(s, sig.GetRuleId()+": "+sig.GetReason())
			}
		}
		t.Fatalf("got %d incidents, want exactly the injected behaviour; signals: %q", len(got), s)
	}
	inc := got[0]
	sigs := inc.GetSignals()
	if len(sigs) != 1 {
		t.Fatalf("incident has %d signals, want 1: %v", len(sigs), sigs)
	}
	sig := sigs[0]
	parent := whoami.Process.PPID
	// 203: the executions of /usr/bin/bash the baseline saw in both copies
	// of the recording before the injected one (the recording is fixed).
	wantReason := "/usr/bin/bash started /usr/bin/whoami, which it has not started in 203 earlier executions over 24 h"
	if sig.GetRuleId() != "anomaly.rare-child" || sig.GetSource() != "anomaly" || sig.GetObject() != "/usr/bin/whoami" ||
		sig.GetPid() != 999999 || sig.GetExe() != "/usr/bin/whoami" || sig.GetParentExe() != "/usr/bin/bash" ||
		sig.GetReason() != wantReason || sig.GetSeverity() != vigilv1.Severity_SEVERITY_LOW {
		t.Errorf("signal %v, want anomaly.rare-child of pid 999999 (parent %d): %q", sig, parent, wantReason)
	}
	if inc.GetSeverity() != vigilv1.Severity_SEVERITY_LOW || inc.GetRuleId() != "anomaly.rare-child" {
		t.Errorf("incident %s %v, want a low anomaly.rare-child incident", inc.GetRuleId(), inc.GetSeverity())
	}
}

// tmpExec is an exec of exe under /tmp by a shell, at.
func tmpExec(at time.Time, pid uint32, exe string) []any {
	shell := event.Process{PID: 500, PPID: 1, StartTime: 1e9, Comm: "bash", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	child := event.Process{PID: pid, PPID: 500, StartTime: uint64(pid) * 1e9, Comm: "x", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	return []any{
		&event.Exec{Time: at.Add(-time.Second), Process: shell, Exe: "/usr/bin/bash", Filename: "/bin/bash", Args: []string{"bash"}, Cwd: "/root"},
		&event.Fork{Time: at, Process: child},
		&event.Exec{Time: at, Process: child, Exe: exe, Filename: exe, Args: []string{exe}, Cwd: "/root"},
		&event.Exit{Time: at.Add(time.Millisecond), Process: child},
	}
}

// TestFeedbackStopsTheSameBehaviourOnly labels an incident benign and
// checks that the same behaviour no longer raises it while a different one
// still does.
func TestFeedbackStopsTheSameBehaviourOnly(t *testing.T) {
	var c collector
	p := newPipeline(t, time.Hour, &c)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, ev := range tmpExec(t0, 600, "/tmp/build/run-tests") {
		p.Handle(ev)
	}
	first := c.incidents()
	if len(first) != 1 || first[0].GetRuleId() != "exec-from-tmp" {
		t.Fatalf("first run: %d incidents %v, want one exec-from-tmp", len(first), first)
	}
	sups := feedback.FromIncident(first[0], "analyst", "our test runner", t0)
	if len(sups) != 1 || sups[0].RuleID != "exec-from-tmp" || sups[0].Exe != "/tmp/build/run-tests" || sups[0].ParentExe != "/usr/bin/bash" {
		t.Fatalf("suppressions %+v", sups)
	}
	p.SetSuppressions(sups)

	// An hour later (past the repeat and correlation windows): the same
	// program under the same parent raises nothing...
	later := t0.Add(time.Hour)
	for _, ev := range tmpExec(later, 601, "/tmp/build/run-tests") {
		p.Handle(ev)
	}
	if got := c.incidents(); len(got) != 1 {
		t.Fatalf("the labelled behaviour came back: %d incidents", len(got))
	}
	if st := p.Stats(); st.Suppressed != 1 {
		t.Errorf("suppressed %d signals, want 1", st.Suppressed)
	}
	// ...while another program from /tmp still does.
	for _, ev := range tmpExec(later.Add(time.Second), 602, "/tmp/.x/payload") {
		p.Handle(ev)
	}
	got := c.incidents()
	if len(got) != 2 {
		t.Fatalf("a different behaviour raised %d new incidents, want 1", len(got)-1)
	}
	if inc := got[1]; inc.GetRuleId() != "exec-from-tmp" || inc.GetProcess().GetExe() != "/tmp/.x/payload" {
		t.Errorf("second incident %s on %s, want exec-from-tmp on /tmp/.x/payload", inc.GetRuleId(), inc.GetProcess().GetExe())
	}
}

// TestEventBeforeItsExec: a file event handled before the exec of its
// process (the families are read concurrently) is attributed to the live
// process, not to the image the tree still holds.
func TestEventBeforeItsExec(t *testing.T) {
	var c collector
	set, err := rules.Load()
	if err != nil {
		t.Fatal(err)
	}
	lookups := 0
	p, err := New(Options{
		Builder: &incident.Builder{HostID: "test", Hostname: "test"},
		Engine:  rules.NewEngine(set, rules.Options{}),
		Emit:    c.emit,
		Lookup: func(pid uint32) (proctree.Entry, bool) {
			lookups++
			return proctree.Entry{PID: pid, PPID: 500, StartTime: 7e9, Comm: "cat", Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/shadow"}}, pid == 700
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	shell := event.Process{PID: 500, PPID: 1, StartTime: 1e9, Comm: "bash", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	child := shell
	child.PID, child.PPID, child.StartTime = 700, 500, 7e9
	p.Handle(&event.Exec{Time: t0, Process: shell, Exe: "/usr/bin/bash", Args: []string{"bash"}})
	p.Handle(&event.Fork{Time: t0, Process: child})
	// The open of /etc/shadow, before cat's exec is handled.
	opened := child
	opened.Comm = "cat"
	p.Handle(&event.File{Time: t0.Add(time.Millisecond), Process: opened, Op: event.FileOpen, Syscall: "openat",
		Path: "/etc/shadow", Read: true, Ret: 3})
	got := c.incidents()
	if len(got) != 1 || lookups != 1 {
		t.Fatalf("%d incidents after %d lookups, want 1 after 1", len(got), lookups)
	}
	sig := got[0].GetSignals()[0]
	if sig.GetRuleId() != "shadow-file-read" || sig.GetPid() != 700 || sig.GetExe() != "/usr/bin/cat" || sig.GetParentExe() != "/usr/bin/bash" {
		t.Errorf("signal %v, want shadow-file-read by /usr/bin/cat (pid 700) under /usr/bin/bash", sig)
	}
}

// TestRecordAction: a response is attached to an open incident through
// correlation and to a closed one on top of its last revision.
func TestRecordAction(t *testing.T) {
	var c collector
	p := newPipeline(t, time.Hour, &c)
	p.opts.Latest = func(id string) (*vigilv1.Incident, error) { return c.latest[id], nil }
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, ev := range tmpExec(t0, 600, "/tmp/x") {
		p.Handle(ev)
	}
	inc := c.incidents()[0]
	if err := p.RecordAction(inc.GetId(), &vigilv1.ActionRecord{Id: "a1", Action: "kill", Result: "done"}); err != nil {
		t.Fatal(err)
	}
	if got := c.latest[inc.GetId()]; got.GetRevision() != 2 || len(got.GetActions()) != 1 {
		t.Fatalf("open incident after the action: revision %d, %d actions", got.GetRevision(), len(got.GetActions()))
	}
	p.Tick(t0.Add(time.Hour)) // the correlation window passes: the incident closes
	if err := p.RecordAction(inc.GetId(), &vigilv1.ActionRecord{Id: "a2", Action: "freeze", Result: "refused"}); err != nil {
		t.Fatal(err)
	}
	got := c.latest[inc.GetId()]
	if got.GetRevision() != 3 || len(got.GetActions()) != 2 || got.GetActions()[1].GetId() != "a2" {
		t.Fatalf("closed incident after the action: revision %d, actions %v", got.GetRevision(), got.GetActions())
	}
}
