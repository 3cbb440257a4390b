package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/replay"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// record writes a recording in which a shell runs exe, at.
func record(t *testing.T, path string, at time.Time, pid uint32, exe string) {
	t.Helper()
	w, err := replay.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	shell := event.Process{PID: 500, PPID: 1, StartTime: 1e9, Comm: "bash", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	child := event.Process{PID: pid, PPID: 500, StartTime: uint64(pid) * 1e9, Comm: "run", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	for _, ev := range []any{
		&event.Exec{Time: at.Add(-time.Second), Process: shell, Exe: "/usr/bin/bash", Filename: "/bin/bash", Args: []string{"bash"}, Cwd: "/root"},
		&event.Fork{Time: at, Process: child},
		&event.Exec{Time: at, Process: child, Exe: exe, Filename: exe, Args: []string{exe}, Cwd: "/root"},
		&event.Exit{Time: at.Add(time.Millisecond), Process: child},
	} {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// replayJSON runs "vigil-agent replay --json args..." and returns the incidents and stderr.
func replayJSON(t *testing.T, args ...string) ([]*vigilv1.Incident, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := runReplay(append([]string{"--json"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("replay %v: exit %d: %s", args, code, errOut.String())
	}
	var incs []*vigilv1.Incident
	s := bufio.NewScanner(&out)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		inc := &vigilv1.Incident{}
		if err := protojson.Unmarshal(s.Bytes(), inc); err != nil {
			t.Fatalf("replay output line %q: %v", s.Text(), err)
		}
		incs = append(incs, inc)
	}
	return incs, errOut.String()
}

// TestReplayLabelReplay replays a recording, labels its incident benign
// the way an analyst on the host would, and replays again with the
// feedback: the incident does not return, while another program does.
func TestReplayLabelReplay(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	first := filepath.Join(dir, "first.jsonl")
	record(t, first, t0, 600, "/tmp/build/run-tests")

	incs, summary := replayJSON(t, "--no-anomaly", first)
	if len(incs) != 1 || incs[0].GetRuleId() != "exec-from-tmp" || incs[0].GetProcess().GetExe() != "/tmp/build/run-tests" {
		t.Fatalf("first replay: %v", incs)
	}
	if want := "replayed 4 events: 1 rule matches, 0 anomalies, 0 suppressed by feedback, 1 incidents\n"; summary != want {
		t.Errorf("summary %q, want %q", summary, want)
	}

	// The agent journals every incident it sends; label it from there.
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	j := &feedback.Journal{Path: filepath.Join(state, feedback.JournalName)}
	if err := j.Add(incs[0]); err != nil {
		t.Fatal(err)
	}
	benignID := incs[0].GetId()
	var out, errOut bytes.Buffer
	if code := runLabel([]string{"benign", incs[0].GetId(), "--state-dir", state, "--note", "CI test runner", "--by", "alice"}, &out, &errOut); code != 0 {
		t.Fatalf("label: exit %d: %s", code, errOut.String())
	}
	want := "incident " + incs[0].GetId() + " (" + incs[0].GetTitle() + ") labelled benign: 1 new suppressions, 0 already there\n" +
		"  exec-from-tmp by /tmp/build/run-tests under /usr/bin/bash\n"
	if out.String() != want {
		t.Errorf("label printed %q, want %q", out.String(), want)
	}

	// The same behaviour a day later raises nothing; another program does.
	again := filepath.Join(dir, "again.jsonl")
	record(t, again, t0.Add(24*time.Hour), 601, "/tmp/build/run-tests")
	other := filepath.Join(dir, "other.jsonl")
	record(t, other, t0.Add(25*time.Hour), 602, "/tmp/.x/payload")
	fb := filepath.Join(state, feedback.FileName)
	incs, summary = replayJSON(t, "--no-anomaly", "--feedback", fb, again, other)
	if len(incs) != 1 || incs[0].GetProcess().GetExe() != "/tmp/.x/payload" {
		t.Fatalf("replay with feedback: %d incidents %v, want only the other program's", len(incs), incs)
	}
	if want := "replayed 8 events: 2 rule matches, 0 anomalies, 1 suppressed by feedback, 1 incidents\n"; summary != want {
		t.Errorf("summary %q, want %q", summary, want)
	}

	// Unlabelled, the behaviour raises its incident again.
	out.Reset()
	errOut.Reset()
	if code := runLabel([]string{"unlabelled", benignID, "--state-dir", state}, &out, &errOut); code != 0 {
		t.Fatalf("unlabelled: exit %d: %s", code, errOut.String())
	}
	if want := "incident " + benignID + " unlabelled: 1 suppressions removed\n"; out.String() != want {
		t.Errorf("unlabelled printed %q, want %q", out.String(), want)
	}
	incs, summary = replayJSON(t, "--no-anomaly", "--feedback", fb, again)
	if len(incs) != 1 || incs[0].GetProcess().GetExe() != "/tmp/build/run-tests" {
		t.Fatalf("replay after unlabelled: %v, want the labelled program's incident back", incs)
	}
	if want := "replayed 4 events: 1 rule matches, 0 anomalies, 0 suppressed by feedback, 1 incidents\n"; summary != want {
		t.Errorf("summary %q, want %q", summary, want)
	}
	// Again: nothing left to withdraw.
	out.Reset()
	errOut.Reset()
	if code := runLabel([]string{"unlabelled", benignID, "--state-dir", state}, &out, &errOut); code != 1 ||
		errOut.String() != "vigil-agent label: incident "+benignID+" has no suppressions in the feedback file\n" {
		t.Errorf("second unlabelled: exit %d, %q", code, errOut.String())
	}
}

func TestReplayAndLabelErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	w, err := replay.Create(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteComment("a recording with a broken line"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	appendLine(t, bad, `{"type":"frok","event":{}}`)
	for _, tt := range []struct {
		name string
		run  func(args []string, stdout, stderr io.Writer) int
		args []string
		code int
		want string
	}{
		{"replay without file", runReplay, nil, 2, "vigil-agent replay: no recording given"},
		{"replay bad line", runReplay, []string{bad}, 1, `bad.jsonl:2: unknown event type "frok"`},
		{"replay save without state", runReplay, []string{"--save", bad}, 2, "--save needs --state-dir"},
		{"label without id", runLabel, []string{"benign"}, 2, "want a verdict and an incident id"},
		{"label unknown id", runLabel, []string{"benign", "0193a000-0000-7000-8000-00000000dead", "--state-dir", dir}, 1,
			"no such incident in the journal: 0193a000-0000-7000-8000-00000000dead"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := tt.run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), tt.code, tt.want)
			}
		})
	}
}

// appendLine appends one line to a file.
func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}
