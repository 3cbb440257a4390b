package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/render"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// startServer starts a real server on loopback over a SQLite file in a
// temporary directory.
func startServer(t *testing.T, listen, db string) *app.Server {
	t.Helper()
	srv, err := app.Start(app.Config{Listen: listen, DBPath: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, srv) })
	return srv
}

func stop(t *testing.T, srv *app.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// report sends incidents through the agent service, as an agent would,
// and sets their cursors to the ones the server acknowledged.
func report(t *testing.T, addr string, incs ...*vigilv1.Incident) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*vigilv1.AgentMessage{{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: incs[0].GetHostId(), Hostname: "web-1"}}}}
	for i, inc := range incs {
		msgs = append(msgs, &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: uint64(i + 1), Incident: inc}}})
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, inc := range incs {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		inc.Cursor = m.GetAck().GetCursor()
	}
	stream.CloseSend()
}

// run runs vigilctl in-process and returns its exit status and output.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

func newServer(t *testing.T) (*app.Server, []*vigilv1.Incident) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	const host = "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f"
	incs := []*vigilv1.Incident{
		storetest.NewIncident(host, "shell-from-web", vigilv1.Severity_SEVERITY_HIGH),
		storetest.NewIncident(host, "memfd-exec", vigilv1.Severity_SEVERITY_CRITICAL),
		storetest.NewIncident(host, "shell-from-web", vigilv1.Severity_SEVERITY_LOW),
	}
	incs[1].Title = "Executable run from memory"
	incs[1].Process.Exe = "/memfd:payload"
	incs[1].Process.ExeMemfd = true
	report(t, srv.Addr(), incs...)
	return srv, incs
}

func TestListJSON(t *testing.T) {
	srv, incs := newServer(t)
	code, out, errOut := run(t, nil, "--server", srv.Addr(), "incidents", "list", "--json")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), out)
	}
	// Newest first, each line the stored incident.
	for i, line := range lines {
		want, err := srv.Store().Get(context.Background(), incs[2-i].GetId())
		if err != nil {
			t.Fatal(err)
		}
		var got vigilv1.Incident
		if err := protojson.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not an incident: %v\n%s", i, err, line)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("line %d:\n got %v\nwant %v", i, &got, want)
		}
		if got.GetCursor() != uint64(3-i) {
			t.Errorf("line %d cursor = %d, want %d", i, got.GetCursor(), 3-i)
		}
	}
}

func TestListTable(t *testing.T) {
	srv, _ := newServer(t)
	env := map[string]string{cli.ServerEnv: srv.Addr()}
	code, out, errOut := run(t, env, "incidents", "list")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := "" +
		"CURSOR  TIME                  SEVERITY  HOST   RULE            TECHNIQUE  PID   EXE             TITLE\n" +
		"3       2026-03-14T09:26:53Z  low       web-1  shell-from-web  T1059.004  4243  /usr/bin/bash   Shell spawned by web server\n" +
		"2       2026-03-14T09:26:53Z  critical  web-1  memfd-exec      T1059.004  4243  /memfd:payload  Executable run from memory\n" +
		"1       2026-03-14T09:26:53Z  high      web-1  shell-from-web  T1059.004  4243  /usr/bin/bash   Shell spawned by web server\n"
	if out != want {
		t.Errorf("list:\n%s\nwant:\n%s", out, want)
	}

	// Filters and the limit.
	code, out, _ = run(t, env, "incidents", "list", "--min-severity", "high", "--limit", "1")
	want = "" +
		"CURSOR  TIME                  SEVERITY  HOST   RULE        TECHNIQUE  PID   EXE             TITLE\n" +
		"2       2026-03-14T09:26:53Z  critical  web-1  memfd-exec  T1059.004  4243  /memfd:payload  Executable run from memory\n"
	if code != cli.ExitOK || out != want {
		t.Errorf("list --min-severity high --limit 1: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	code, out, _ = run(t, env, "incidents", "list", "--rule", "shell-from-web", "--host", "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "--json")
	if n := strings.Count(out, "\n"); code != cli.ExitOK || n != 2 {
		t.Errorf("list --rule --host: exit %d, %d lines", code, n)
	}
	// An unknown host is an error, not an empty table (see TestHostnameForHostID).
	code, out, errOut = run(t, env, "incidents", "list", "--host", "nobody")
	if want := "vigilctl: no agent has host id or hostname \"nobody\" (see 'vigilctl agents')\n"; code != cli.ExitError || out != "" || errOut != want {
		t.Errorf("list --host nobody: exit %d %q %q", code, out, errOut)
	}
}

func TestListPagesPastOneThousand(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	for range 1100 {
		if _, _, err := srv.Store().Put(context.Background(), storetest.NewIncident("h", "r", vigilv1.Severity_SEVERITY_LOW)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		limit string
		want  int
	}{{"1050", 1050}, {"5000", 1100}} {
		code, out, errOut := run(t, nil, "--server", srv.Addr(), "incidents", "list", "--json", "--limit", tt.limit)
		if n := strings.Count(out, "\n"); code != cli.ExitOK || n != tt.want {
			t.Errorf("--limit %s: exit %d, %d lines, want %d; stderr %q", tt.limit, code, n, tt.want, errOut)
		}
	}
}

func TestShow(t *testing.T) {
	srv, incs := newServer(t)
	stored, err := srv.Store().Get(context.Background(), incs[0].GetId())
	if err != nil {
		t.Fatal(err)
	}
	// Flags may come after the ID.
	code, out, errOut := run(t, nil, "incidents", "show", incs[0].GetId(), "--server", srv.Addr())
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := "" +
		"Incident  " + incs[0].GetId() + "\n" +
		"Title     Shell spawned by web server\n" +
		"Severity  high\n" +
		"Time      2026-03-14T09:26:53Z\n" +
		"Received  " + render.Time(stored.GetReceivedTime()) + "\n" +
		"Cursor    1\n" +
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
		"      └─ 4243 www-data /usr/bin/bash bash -i   <- triggered the rule\n" +
		"\n" +
		"Triage\n" +
		"  Status:  open\n" +
		"  Label:   unlabelled\n"
	if out != want {
		t.Errorf("show:\n%s\nwant:\n%s", out, want)
	}

	code, out, _ = run(t, nil, "--server", srv.Addr(), "incidents", "show", "--json", incs[1].GetId())
	var got vigilv1.Incident
	if err := protojson.Unmarshal([]byte(out), &got); code != cli.ExitOK || err != nil || got.GetId() != incs[1].GetId() || got.GetCursor() != 2 {
		t.Errorf("show --json: exit %d, %v, %s", code, err, out)
	}

	missing := storetest.NewID()
	code, out, errOut = run(t, nil, "--server", srv.Addr(), "incidents", "show", missing)
	if want := "vigilctl: incident " + missing + " not found\n"; code != cli.ExitError || out != "" || errOut != want {
		t.Errorf("show missing: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
	}
}

func TestUnreachable(t *testing.T) {
	for _, args := range [][]string{
		{"incidents", "list"},
		{"incidents", "show", storetest.NewID()},
		{"incidents", "tail"},
	} {
		code, _, errOut := run(t, map[string]string{cli.ServerEnv: "127.0.0.1:1"}, args...)
		if want := "vigilctl: cannot reach vigil-server at 127.0.0.1:1: "; code != cli.ExitError || !strings.HasPrefix(errOut, want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and prefix %q", args, code, errOut, want)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "vigilctl: no command given\nRun 'vigilctl --help' for usage.\n"},
		{[]string{"frob"}, "vigilctl: unknown command \"frob\"\nRun 'vigilctl --help' for usage.\n"},
		{[]string{"--bogus", "incidents"}, "vigilctl: flag provided but not defined: -bogus\nRun 'vigilctl --help' for usage.\n"},
		{[]string{"incidents"}, "vigilctl: no incidents command given (list, tail, show, update or export)\nRun 'vigilctl incidents --help' for usage.\n"},
		{[]string{"incidents", "delete"}, "vigilctl: unknown incidents command \"delete\" (want list, tail, show, update or export)\nRun 'vigilctl incidents --help' for usage.\n"},
		{[]string{"incidents", "list", "--limit", "0"}, "vigilctl: --limit 0 is not positive\nRun 'vigilctl incidents list --help' for usage.\n"},
		{[]string{"incidents", "list", "--min-severity", "urgent"}, "vigilctl: --min-severity: unknown severity \"urgent\" (want info, low, medium, high or critical)\nRun 'vigilctl incidents list --help' for usage.\n"},
		{[]string{"incidents", "list", "extra"}, "vigilctl: unexpected argument \"extra\"\nRun 'vigilctl incidents list --help' for usage.\n"},
		{[]string{"incidents", "tail", "--after", "-3"}, "vigilctl: invalid value \"-3\" for flag -after: parse error\nRun 'vigilctl incidents tail --help' for usage.\n"},
		{[]string{"incidents", "show"}, "vigilctl: missing incident ID\nRun 'vigilctl incidents show --help' for usage.\n"},
		{[]string{"incidents", "show", "a", "b"}, "vigilctl: unexpected argument \"b\" after the incident ID\nRun 'vigilctl incidents show --help' for usage.\n"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, nil, tt.args...)
		if code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, cli.ExitUsage)
		}
		// The first two cases print the help above the error.
		if !strings.HasSuffix(errOut, tt.want) {
			t.Errorf("%q: stderr\n%s\nwant suffix\n%s", tt.args, errOut, tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "vigilctl reads the incidents a Vigil server has stored.\n"},
		{[]string{"-h"}, "vigilctl reads the incidents a Vigil server has stored.\n"},
		{[]string{"help"}, "vigilctl reads the incidents a Vigil server has stored.\n"},
		{[]string{"incidents", "--help"}, "vigilctl incidents reads stored incidents.\n"},
		{[]string{"incidents", "list", "--help"}, "vigilctl incidents list prints stored incidents, newest first.\n"},
		{[]string{"incidents", "tail", "-h"}, "vigilctl incidents tail prints every stored incident after a cursor,\n"},
		{[]string{"incidents", "show", "--help"}, "vigilctl incidents show prints one incident: its details and its process\n"},
		{[]string{"agents", "--help"}, "vigilctl agents lists the agents the server knows: every agent that has\n"},
		{[]string{"respond", "--help"}, "vigilctl respond asks the agent of a host to carry out one response, and\n"},
		{[]string{"actions", "--help"}, "vigilctl actions lists the actions requested through the server\n"},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, nil, tt.args...)
		if code != cli.ExitOK || !strings.HasPrefix(out, tt.want) || errOut != "" {
			t.Errorf("%q: exit %d, stdout starts %q, stderr %q", tt.args, code, firstLine(out), errOut)
		}
		if !strings.Contains(out, "Example") {
			t.Errorf("%q: help has no example", tt.args)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// lockedBuffer is a buffer that a running vigilctl writes while the test
// reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the complete lines written so far.
func (b *lockedBuffer) lines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// waitLines waits until buf holds n lines.
func waitLines(t *testing.T, buf *lockedBuffer, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := buf.lines()
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d lines, want %d:\n%s", len(lines), n, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tail starts "vigilctl incidents tail" with args in the background.
func tail(t *testing.T, args ...string) (*lockedBuffer, *lockedBuffer, func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"incidents", "tail"}, args...), &stdout, &stderr, func(string) string { return "" })
	}()
	stopped := false
	var code int
	stopTail := func() int {
		if !stopped {
			cancel()
			code = <-done
			stopped = true
		}
		return code
	}
	t.Cleanup(func() { stopTail() })
	return &stdout, &stderr, stopTail
}

// cursorOf reads the cursor of a JSON line.
func cursorOf(t *testing.T, line string) uint64 {
	t.Helper()
	var inc vigilv1.Incident
	if err := protojson.Unmarshal([]byte(line), &inc); err != nil {
		t.Fatalf("not an incident: %v: %s", err, line)
	}
	return inc.GetCursor()
}

func TestTailJSON(t *testing.T) {
	srv, _ := newServer(t)
	stdout, stderr, stopTail := tail(t, "--server", srv.Addr(), "--after", "1", "--json")
	lines := waitLines(t, stdout, 2)
	more := []*vigilv1.Incident{
		storetest.NewIncident("0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "r", vigilv1.Severity_SEVERITY_LOW),
		storetest.NewIncident("0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "r", vigilv1.Severity_SEVERITY_LOW),
	}
	report(t, srv.Addr(), more...)
	lines = waitLines(t, stdout, 4)
	if code := stopTail(); code != cli.ExitOK {
		t.Errorf("tail exit %d after Ctrl-C, stderr %q", code, stderr.String())
	}
	var got []uint64
	for _, l := range lines {
		got = append(got, cursorOf(t, l))
	}
	if fmt.Sprint(got) != "[2 3 4 5]" {
		t.Errorf("tail cursors = %v, want [2 3 4 5]", got)
	}
}

func TestTailTable(t *testing.T) {
	srv, _ := newServer(t)
	stdout, _, stopTail := tail(t, "--server", srv.Addr(), "--min-severity", "critical")
	lines := waitLines(t, stdout, 2)
	stopTail()
	want := []string{
		render.FeedHeader(),
		"2        2026-03-14T09:26:53Z  critical  web-1             memfd-exec                T1059.004   4243     /memfd:payload            Executable run from memory",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("tail:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// A tail whose server restarts resumes after the last incident it printed.
func TestTailReconnects(t *testing.T) {
	db := filepath.Join(t.TempDir(), "server.db")
	srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: db})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	host := "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f"
	report(t, addr, storetest.NewIncident(host, "r", vigilv1.Severity_SEVERITY_LOW))
	stdout, stderr, stopTail := tail(t, "--server", addr, "--json")
	waitLines(t, stdout, 1)

	stop(t, srv)
	srv = startServer(t, addr, db)
	report(t, addr, storetest.NewIncident(host, "r", vigilv1.Severity_SEVERITY_LOW), storetest.NewIncident(host, "r", vigilv1.Severity_SEVERITY_LOW))
	lines := waitLines(t, stdout, 3)
	if code := stopTail(); code != cli.ExitOK {
		t.Errorf("tail exit %d", code)
	}
	var got []uint64
	for _, l := range lines {
		got = append(got, cursorOf(t, l))
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("tail cursors across restart = %v, want [1 2 3]", got)
	}
	if want := "vigilctl: connection to " + addr + " lost (server is shutting down); reconnecting after cursor 1\n"; !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr = %q, want prefix %q", stderr.String(), want)
	}
}

// TestUpdate triages an incident with vigilctl and reads the triage back
// with show.
func TestUpdate(t *testing.T) {
	srv, incs := newServer(t)
	id := incs[0].GetId()
	env := map[string]string{"VIGIL_SERVER": srv.Addr()}
	code, out, errOut := run(t, env, "incidents", "update", id, "--status", "acknowledged", "--note", "looking", "--author", "alice")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("update: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, env, "incidents", "update", id, "--label", "benign", "--status", "resolved", "--author", "bob")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("update: exit %d, stderr %q", code, errOut)
	}
	stored, err := srv.Store().Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	tr := stored.GetTriage()
	ts := func(p interface{ AsTime() time.Time }) string { return p.AsTime().UTC().Format(time.RFC3339) }
	wantTriage := "Triage\n" +
		"  Status:  resolved\n" +
		"  Label:   benign (by bob at " + ts(tr.GetLabelTime()) + ")\n" +
		"  Updated: " + ts(tr.GetUpdatedTime()) + "\n" +
		"  Notes:\n" +
		"    " + ts(tr.GetNotes()[0].GetTime()) + " alice: looking\n"
	if !strings.HasPrefix(out, "Incident  "+id+"\n") {
		t.Errorf("update output %q does not start with the incident id", out)
	}
	code, out, _ = run(t, env, "incidents", "show", id)
	if code != cli.ExitOK || !strings.HasSuffix(out, "\n\n"+wantTriage) {
		t.Errorf("show after update: exit %d\n%s\nwant it to end with:\n%s", code, out, wantTriage)
	}

	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{id}, cli.ExitUsage, "nothing to change"},
		{[]string{id, "--status", "closed"}, cli.ExitUsage, `--status "closed"`},
		{[]string{id, "--label", "fine"}, cli.ExitUsage, `--label "fine"`},
		{[]string{"--note", "x"}, cli.ExitUsage, "missing incident ID"},
		{[]string{storetest.NewID(), "--note", "x"}, cli.ExitError, "not found"},
		{[]string{id, "--note", strings.Repeat("x", 5000)}, cli.ExitError, "note is 5000 bytes"},
	} {
		code, _, errOut := run(t, env, append([]string{"incidents", "update"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("update %q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.err)
		}
	}
}

// TestAgents prints the agents table: a connected agent's hello and
// heartbeat values, and its last-seen time.
func TestAgents(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	const host = "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f"
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*vigilv1.AgentMessage{
		{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{
			HostId: host, Hostname: "web-1", KernelRelease: "6.8.0-45-generic", AgentVersion: "0.4.0",
		}}},
		{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{
			EventsTotal: 1000, EventsLost: map[string]uint64{"net": 2, "file": 1, "process": 0},
			PolicyVersion: 3, PolicyHash: "sha256:00",
		}}},
		{Msg: &vigilv1.AgentMessage_RuleSetResult{RuleSetResult: &vigilv1.RuleSetResult{
			Version: 4, Hash: "sha256:01", Error: "fleet.yaml:3:5: rule \"x\": missing title",
		}}},
	} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a, ok := srv.Fleet().Get(host); ok && a.LastHeartbeat != nil && a.LastRuleSetResult != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never got the heartbeat")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a, _ := srv.Fleet().Get(host)
	seen := a.LastSeen.UTC().Format(render.TimeFormat)

	code, stdout, stderr := run(t, nil, "--server", srv.Addr(), "agents")
	if code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "" +
		"HOST                              HOSTNAME  VERSION  KERNEL            CONNECTED  LAST SEEN             LOSSES            POLICY\n" +
		host + "  web-1     0.4.0    6.8.0-45-generic  yes        " + seen + "  3 (file=1,net=2)  v3 (v4 refused)\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}

	// Once the agent has gone it is listed as not connected.
	stream.CloseSend()
	for {
		if a, _ := srv.Fleet().Get(host); a.Connections == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never saw the agent go")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, stdout, _ = run(t, nil, "--server", srv.Addr(), "agents")
	if !strings.Contains(stdout, "  no  ") {
		t.Errorf("after disconnect:\n%s\nwant the agent not connected", stdout)
	}
}

// TestRespondToAbsentHost names the host in the error when its agent is
// not connected, and exits 1.
func TestRespondToAbsentHost(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	code, _, stderr := run(t, nil, "--server", srv.Addr(), "respond", "nohost", "kill", "pid:4242", "--dry-run")
	if code != cli.ExitError || stderr != "vigilctl: no agent has host id or hostname \"nohost\" (see 'vigilctl agents')\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = run(t, nil, "--server", srv.Addr(), "respond", "nohost", "kill")
	if code != cli.ExitUsage {
		t.Errorf("respond without target: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := run(t, nil, "--server", srv.Addr(), "actions")
	if code != cli.ExitOK || stdout != "TIME  HOST  ACTION  TARGET  RESULT  REQUESTER  INCIDENT  DETAIL\n" {
		t.Errorf("actions on an empty store: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
