package render_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// fixed returns the test incident with a fixed id, cursor and receive time.
func fixed(id string, cursor uint64) *vigilv1.Incident {
	inc := storetest.NewIncident("0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	inc.Id = id
	inc.Cursor = cursor
	inc.ReceivedTime = timestamppb.New(storetest.IncidentTime.Add(1500 * time.Millisecond))
	return inc
}

const (
	id1 = "01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f"
	id2 = "01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e80"
)

func TestTable(t *testing.T) {
	a := fixed(id1, 12)
	b := fixed(id2, 7)
	b.Hostname = ""
	b.HostId = "db-2"
	b.Severity = vigilv1.Severity_SEVERITY_CRITICAL
	b.RuleId = "memfd-exec"
	b.Attack = nil
	b.Process = nil
	b.Title = "Executable run from memory"
	var buf bytes.Buffer
	if err := render.Table(&buf, []*vigilv1.Incident{a, b}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"CURSOR  TIME                  SEVERITY  HOST   RULE            TECHNIQUE  PID   EXE            TITLE\n" +
		"12      2026-03-14T09:26:53Z  high      web-1  shell-from-web  T1059.004  4243  /usr/bin/bash  Shell spawned by web server\n" +
		"7       2026-03-14T09:26:53Z  critical  db-2   memfd-exec      -          -     -              Executable run from memory\n"
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestTableEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := render.Table(&buf, nil); err != nil {
		t.Fatal(err)
	}
	want := "CURSOR  TIME  SEVERITY  HOST  RULE  TECHNIQUE  PID  EXE  TITLE\n"
	if got := buf.String(); got != want {
		t.Errorf("empty table = %q, want %q", got, want)
	}
}

func TestFeed(t *testing.T) {
	wantHeader := "CURSOR   TIME                  SEVERITY  HOST              RULE                      TECHNIQUE   PID      EXE                       TITLE"
	if got := render.FeedHeader(); got != wantHeader {
		t.Errorf("feed header:\n%q\nwant\n%q", got, wantHeader)
	}
	want := "12       2026-03-14T09:26:53Z  high      web-1             shell-from-web            T1059.004   4243     /usr/bin/bash             Shell spawned by web server"
	if got := render.Feed(fixed(id1, 12)); got != want {
		t.Errorf("feed line:\n%q\nwant\n%q", got, want)
	}
}

func TestShow(t *testing.T) {
	inc := fixed(id1, 12)
	var buf bytes.Buffer
	if err := render.Show(&buf, inc); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"Incident  01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f\n" +
		"Title     Shell spawned by web server\n" +
		"Severity  high\n" +
		"Time      2026-03-14T09:26:53Z\n" +
		"Received  2026-03-14T09:26:54Z\n" +
		"Cursor    12\n" +
		"Host      web-1 (0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f)\n" +
		"Rule      shell-from-web\n" +
		"ATT&CK    TA0002 Execution / T1059.004 Unix Shell\n" +
		"\n" +
		"  nginx started an interactive shell.\n" +
		"\n" +
		"Process tree\n" +
		"1 root /usr/lib/systemd/systemd /sbin/init\n" +
		"└─ 812 root /usr/sbin/nginx nginx -g \"daemon off;\"\n" +
		"   └─ 4242 www-data /usr/sbin/nginx \"nginx: worker process\"\n" +
		"      └─ 4243 www-data /usr/bin/bash bash -i   <- triggered the rule\n"
	if got := buf.String(); got != want {
		t.Errorf("show:\n%s\nwant:\n%s", got, want)
	}
}

func TestTreeNotes(t *testing.T) {
	inc := &vigilv1.Incident{Process: &vigilv1.Process{
		Pid: 77, Uid: 1000, Exe: "/memfd:x", ExeMemfd: true, ExeDeleted: true,
		Args: []string{"x", "", "a\tb"}, ArgsTruncated: true, Exited: true, ExitCode: 9,
	}}
	want := "77 uid 1000 /memfd:x (deleted) (memfd) x \"\" \"a\\tb\" … (exited, status 9)   <- triggered the rule\n"
	if got := render.Tree(inc); got != want {
		t.Errorf("tree = %q, want %q", got, want)
	}
	if got, want := render.Tree(&vigilv1.Incident{}), "  (no process recorded)\n"; got != want {
		t.Errorf("empty tree = %q, want %q", got, want)
	}
}

func TestSeverity(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want vigilv1.Severity
	}{{"info", 1}, {"LOW", 2}, {"Medium", 3}, {"severity_high", 4}, {"SEVERITY_CRITICAL", 5}} {
		got, err := render.ParseSeverity(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSeverity(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if name := render.Severity(got); name != render.Severity(tt.want) {
			t.Errorf("round trip of %q = %q", tt.in, name)
		}
	}
	for _, bad := range []string{"", "unspecified", "urgent", "4"} {
		if _, err := render.ParseSeverity(bad); err == nil {
			t.Errorf("ParseSeverity(%q) succeeded", bad)
		}
	}
	if got := render.Severity(vigilv1.Severity_SEVERITY_MEDIUM); got != "medium" {
		t.Errorf("Severity(MEDIUM) = %q", got)
	}
}

func TestJSONLine(t *testing.T) {
	inc := fixed(id1, 12)
	var buf bytes.Buffer
	if err := render.JSONLine(&buf, inc); err != nil {
		t.Fatal(err)
	}
	line := buf.Bytes()
	if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("not one line: %q", line)
	}
	var got vigilv1.Incident
	if err := protojson.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, inc) {
		t.Errorf("JSON round trip:\n got %v\nwant %v", &got, inc)
	}
	if !bytes.Contains(line, []byte(`"id":`)) && !bytes.Contains(line, []byte(`"id": `)) {
		t.Errorf("no id field in %s", line)
	}
}

func TestTerminalControlCharactersAreEscaped(t *testing.T) {
	inc := storetest.NewIncident("h", "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
	inc.Process.Exe = "/tmp/vt/\x1b]0;PWNED\a\x1b[2J"
	inc.Title = "two\nlines"
	inc.Description = "name \x1b[31mred\x1b[0m\nsecond line"
	var table strings.Builder
	if err := render.Table(&table, []*vigilv1.Incident{inc}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(table.String(), "\x1b\a") || strings.Count(table.String(), "\n") != 2 {
		t.Errorf("table lets control characters through:\n%q", table.String())
	}
	if !strings.Contains(table.String(), `/tmp/vt/\x1b]0;PWNED\a\x1b[2J`) || !strings.Contains(table.String(), `two\nlines`) {
		t.Errorf("table does not show the escaped text:\n%s", table.String())
	}
	var show strings.Builder
	if err := render.Show(&show, inc); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(show.String(), "\x1b\a") || !strings.Contains(show.String(), `  name \x1b[31mred\x1b[0m\nsecond line`+"\n") {
		t.Errorf("show lets control characters through:\n%q", show.String())
	}
	if got := render.Printable("plain /usr/bin/ünïcode"); got != "plain /usr/bin/ünïcode" {
		t.Errorf("printable text changed: %q", got)
	}
}

func TestLongArgumentsAreElidedInTheTree(t *testing.T) {
	inc := storetest.NewIncident("h", "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
	long := strings.Repeat("x", 500)
	inc.Process.Args = []string{"prog", long, "tail"}
	want := "prog " + strings.Repeat("x", render.MaxArgShown) + "… tail"
	if got := render.Process(inc.Process); !strings.Contains(got, want) {
		t.Errorf("process line %q does not contain %q", got, want)
	}
}

func TestShowNamesTheLogin(t *testing.T) {
	inc := storetest.NewIncident("h", "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
	inc.Login = &vigilv1.Login{SessionId: 12, Service: "sshd", User: "alice", RemoteHost: "203.0.113.7", Tty: "ssh",
		Time: timestamppb.New(time.Date(2026, 12, 3, 16, 13, 20, 0, time.UTC)), Pid: 4242}
	var b strings.Builder
	if err := render.Show(&b, inc); err != nil {
		t.Fatal(err)
	}
	want := "Login     sshd login of alice from 203.0.113.7 on ssh at 2026-12-03T16:13:20Z (session 12, pid 4242)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("show lacks %q:\n%s", want, b.String())
	}
}

func TestShowTellsTheStory(t *testing.T) {
	inc := fixed(id1, 12)
	inc.Score = 93.75
	inc.Revision = 3
	inc.Cause = "A login to alice over sshd from 127.0.0.1, after 5 failed passwords from that address, started bash -> cat."
	inc.Signals = []*vigilv1.Signal{
		{Time: timestamppb.New(time.Date(2026, 3, 14, 9, 26, 40, 0, time.UTC)), RuleId: "ssh-brute-force", Severity: vigilv1.Severity_SEVERITY_MEDIUM,
			Attack: &vigilv1.Attack{TechniqueId: "T1110.001"}, RemoteHost: "127.0.0.1", Reason: "5 failed passwords\x1b[2J", Repeats: 2},
		{Time: timestamppb.New(time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)), RuleId: "shadow-file-read", Severity: vigilv1.Severity_SEVERITY_HIGH,
			Attack: &vigilv1.Attack{TechniqueId: "T1003.008"}, Pid: 4243, Exe: "/usr/bin/cat", Reason: "cat read /etc/shadow", Repeats: 1},
	}
	inc.RecommendedActions = []*vigilv1.RecommendedAction{{Action: "block_source", Target: "addr:127.0.0.1", Reason: "the failed logins came from there"}}
	var buf bytes.Buffer
	if err := render.Show(&buf, inc); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	for _, want := range []string{
		"Score     93.8 / 100\n",
		"Revision  3 (updated as correlated signals arrived)\n",
		"Cause     A login to alice over sshd from 127.0.0.1, after 5 failed passwords from that address, started bash -> cat.\n",
		"\nTimeline\n" +
			"  2026-03-14T09:26:40Z  medium   ssh-brute-force [T1110.001] from 127.0.0.1: 5 failed passwords\\x1b[2J (2 repeats)\n" +
			"  2026-03-14T09:26:53Z  high     shadow-file-read [T1003.008] pid 4243 /usr/bin/cat: cat read /etc/shadow (1 repeat)\n",
		"\nRecommended actions\n  1. block_source addr:127.0.0.1: the failed logins came from there\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("show lacks %q:\n%s", want, got)
		}
	}
}

// TestShowEscapesForgedLines: a newline in an argument the attacker chose
// (here a python -c program) is escaped in every paragraph of show, so it
// cannot forge a Triage block or any other line.
func TestShowEscapesForgedLines(t *testing.T) {
	const forged = "print(1)\n\nTriage\n  Status: resolved\n  Label: benign"
	inc := &vigilv1.Incident{
		Id:          id1,
		Title:       "Python run from /tmp",
		Description: "python3 -c " + forged + " ran from /tmp",
		Cause:       "A service started python3 -c " + forged + ".",
		Process: &vigilv1.Process{Pid: 900, User: "bob\nroot", Exe: "/usr/bin/python3",
			Args: []string{"python3", "-c", forged}},
		Signals: []*vigilv1.Signal{{Time: timestamppb.New(time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)), RuleId: "exec-from-tmp",
			Severity: vigilv1.Severity_SEVERITY_MEDIUM, Pid: 900, Exe: "/usr/bin/python3", Reason: "ran " + forged}},
		RecommendedActions: []*vigilv1.RecommendedAction{{Action: "kill_process", Target: "pid:900", Reason: "it ran\n" + forged}},
	}
	var buf bytes.Buffer
	if err := render.Show(&buf, inc); err != nil {
		t.Fatal(err)
	}
	esc := `print(1)\n\nTriage\n  Status: resolved\n  Label: benign`
	want := "" +
		"Incident  " + id1 + "\n" +
		"Title     Python run from /tmp\n" +
		"Severity  unspecified\n" +
		"Time      -\n" +
		"Received  -\n" +
		"Cursor    0\n" +
		"Host      -\n" +
		"Rule      -\n" +
		"ATT&CK    -\n" +
		"Cause     A service started python3 -c " + esc + ".\n" +
		"\n" +
		"  python3 -c " + esc + " ran from /tmp\n" +
		"\n" +
		"Timeline\n" +
		"  2026-03-14T09:26:53Z  medium   exec-from-tmp pid 900 /usr/bin/python3: ran " + esc + "\n" +
		"\n" +
		"Process tree\n" +
		`900 bob\nroot /usr/bin/python3 python3 -c "` + esc + `"   <- triggered the rule` + "\n" +
		"\n" +
		"Recommended actions\n" +
		`  1. kill_process pid:900: it ran\n` + esc + "\n"
	if got := buf.String(); got != want {
		t.Errorf("show:\n%s\nwant:\n%s", got, want)
	}
}

// correlated returns revision 3 of an incident whose later signals came
// from other processes, later than the first.
func correlated() *vigilv1.Incident {
	inc := fixed(id1, 30)
	inc.Revision = 3
	at := func(sec int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 3, 14, 9, 26, sec, 0, time.UTC))
	}
	inc.Signals = []*vigilv1.Signal{
		{Time: at(53), RuleId: "shell-from-web", Severity: vigilv1.Severity_SEVERITY_HIGH, Pid: 4243, Exe: "/usr/bin/bash", Reason: "nginx started bash"},
		{Time: at(55), RuleId: "exec-from-tmp", Severity: vigilv1.Severity_SEVERITY_MEDIUM, Pid: 4250, Exe: "/tmp/x", Reason: "ran /tmp/x"},
		{Time: at(58), RuleId: "ssh-brute-force", Severity: vigilv1.Severity_SEVERITY_LOW, RemoteHost: "203.0.113.7", Reason: "failed passwords"},
	}
	inc.Related = []*vigilv1.Process{{Pid: 4250, User: "www-data", Exe: "/tmp/x", Args: []string{"/tmp/x", "-q"}}}
	return inc
}

func TestCorrelatedRevisionsShowTheirLatestSignal(t *testing.T) {
	inc := correlated()
	var buf bytes.Buffer
	if err := render.Table(&buf, []*vigilv1.Incident{inc}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"CURSOR  TIME                  SEVERITY  HOST   RULE            TECHNIQUE  PID   EXE     TITLE\n" +
		"30      2026-03-14T09:26:58Z  high      web-1  shell-from-web  T1059.004  4250  /tmp/x  Shell spawned by web server\n"
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	wantFeed := "30       2026-03-14T09:26:58Z  high      web-1             shell-from-web            T1059.004   4250     /tmp/x                    Shell spawned by web server (rev 3: +signal ssh-brute-force)"
	if got := render.Feed(inc); got != wantFeed {
		t.Errorf("feed line:\n%q\nwant\n%q", got, wantFeed)
	}
	buf.Reset()
	if err := render.Show(&buf, inc); err != nil {
		t.Fatal(err)
	}
	wantRel := "\nRelated processes\n  4250 www-data /tmp/x /tmp/x -q\n"
	if !strings.HasSuffix(buf.String(), wantRel) {
		t.Errorf("show does not end in %q:\n%s", wantRel, buf.String())
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 files", 1: "1 file", 2: "2 files"} {
		if got := render.Count(n, "file", "files"); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}
