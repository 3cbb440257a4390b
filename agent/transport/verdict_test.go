package transport

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vigil-sensor/vigil/agent/feedback"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// storyIncident is an incident of hostID with a rule signal on a process,
// a host-level signal and an anomaly signal.
func storyIncident(hostID string) *vigilv1.Incident {
	inc := storetest.NewIncident(hostID, "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	inc.Signals = []*vigilv1.Signal{
		{Source: "rule", RuleId: "shell-from-web", Pid: 4243, Exe: "/usr/bin/bash", Object: "/usr/bin/bash"},
		{Source: "rule", RuleId: "ssh-brute-force", RemoteHost: "203.0.113.7"},
		{Source: "anomaly", RuleId: "anomaly.rare-child", Pid: 4242, Exe: "/usr/sbin/nginx", ParentExe: "/usr/sbin/nginx", Object: "/usr/bin/bash"},
	}
	return inc
}

// wantFeedback is the feedback file the agent must hold after inc was
// labelled benign by alice with note "load test" at labelled: every field
// of every suppression, as the file spells it.
func wantFeedback(t *testing.T, id string, labelled time.Time) string {
	t.Helper()
	at, err := json.Marshal(labelled.UTC())
	if err != nil {
		t.Fatal(err)
	}
	return `{
  "version": 1,
  "suppressions": [
    {
      "incident_id": "` + id + `",
      "rule_id": "shell-from-web",
      "exe": "/usr/bin/bash",
      "parent_exe": "/usr/sbin/nginx",
      "source": "rule",
      "added": ` + string(at) + `,
      "by": "alice",
      "note": "load test"
    },
    {
      "incident_id": "` + id + `",
      "rule_id": "ssh-brute-force",
      "remote_host": "203.0.113.7",
      "source": "rule",
      "added": ` + string(at) + `,
      "by": "alice",
      "note": "load test"
    },
    {
      "incident_id": "` + id + `",
      "rule_id": "anomaly.rare-child",
      "exe": "/usr/sbin/nginx",
      "parent_exe": "/usr/sbin/nginx",
      "object": "/usr/bin/bash",
      "source": "anomaly",
      "added": ` + string(at) + `,
      "by": "alice",
      "note": "load test"
    }
  ]
}
`
}

// incidentClient returns an IncidentService client of the server at addr.
func incidentClient(t *testing.T, addr string) vigilv1.IncidentServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return vigilv1.NewIncidentServiceClient(conn)
}

// labelBenign labels incident id benign through the server's API and
// returns the label's time.
func labelBenign(t *testing.T, incs vigilv1.IncidentServiceClient, id string) time.Time {
	t.Helper()
	got, err := incs.UpdateIncident(context.Background(), &vigilv1.UpdateIncidentRequest{
		Id: id, Label: vigilv1.Label_LABEL_BENIGN, Status: vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED,
		Note: "load test", Author: "alice",
	})
	if err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	return got.GetTriage().GetLabelTime().AsTime()
}

// runClient runs c until the test ends.
func runClient(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerdictReachesConnectedAgent labels an incident benign on the
// server while its agent is connected: the agent's feedback file gets the
// incident's suppressions, and another host's agent gets nothing.
func TestVerdictReachesConnectedAgent(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	dir := t.TempDir()
	a := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a"}, FeedbackFile: filepath.Join(dir, "a", feedback.FileName)}
	b := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-b"}, FeedbackFile: filepath.Join(dir, "b", feedback.FileName)}
	runClient(t, a)
	runClient(t, b)

	inc := storyIncident("host-a")
	if err := a.Send(inc); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the incident to be acknowledged", func() bool { return a.Stats().Acked == 1 })
	waitUntil(t, "host-b to connect", func() bool { return b.Stats().Connected })
	if got := readFile(t, a.FeedbackFile); got != "" {
		t.Fatalf("feedback before any label:\n%s", got)
	}

	labelled := labelBenign(t, incidentClient(t, addr), inc.GetId())
	waitUntil(t, "the verdict to reach host-a", func() bool { return a.Stats().Verdicts == 1 })
	if got, want := readFile(t, a.FeedbackFile), wantFeedback(t, inc.GetId(), labelled); got != want {
		t.Errorf("feedback file of host-a:\n%s\nwant:\n%s", got, want)
	}
	list, err := feedback.Load(a.FeedbackFile)
	if err != nil || len(list) != 3 {
		t.Errorf("feedback.Load: %d suppressions, %v; want 3", len(list), err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := readFile(t, b.FeedbackFile); got != "" || b.Stats().Verdicts != 0 {
		t.Errorf("host-b got another host's verdict (%d):\n%s", b.Stats().Verdicts, got)
	}
}

// TestVerdictReachesAgentAtNextConnect labels an incident benign while its
// agent is away: the agent gets it when it connects, and again at every
// connect without the feedback file changing.
func TestVerdictReachesAgentAtNextConnect(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	inc := storyIncident("host-a")
	if _, _, err := srv.Store().Put(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	labelled := labelBenign(t, incidentClient(t, addr), inc.GetId())
	// An incident labelled otherwise sends nothing.
	other := storyIncident("host-a")
	if _, _, err := srv.Store().Put(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if _, err := incidentClient(t, addr).UpdateIncident(context.Background(), &vigilv1.UpdateIncidentRequest{
		Id: other.GetId(), Label: vigilv1.Label_LABEL_MALICIOUS, Author: "bob",
	}); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), feedback.FileName)
	want := wantFeedback(t, inc.GetId(), labelled)
	var st os.FileInfo
	for round := range 2 {
		c := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a"}, FeedbackFile: path}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		waitUntil(t, "the verdict", func() bool { return c.Stats().Verdicts == 1 })
		cancel()
		<-done
		if got := readFile(t, path); got != want {
			t.Fatalf("round %d: feedback file:\n%s\nwant:\n%s", round, got, want)
		}
		now, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if round == 1 && (!os.SameFile(st, now) || !now.ModTime().Equal(st.ModTime())) {
			t.Error("a resent verdict rewrote the feedback file")
		}
		st = now
	}
}

// setLabel sets the label of incident id through the server's API.
func setLabel(t *testing.T, incs vigilv1.IncidentServiceClient, id string, l vigilv1.Label) {
	t.Helper()
	if _, err := incs.UpdateIncident(context.Background(), &vigilv1.UpdateIncidentRequest{Id: id, Label: l, Author: "bob"}); err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
}

// emptyFeedback is the feedback file once every suppression was withdrawn.
const emptyFeedback = "{\n  \"version\": 1,\n  \"suppressions\": []\n}\n"

// TestVerdictWithdrawnOnConnectedAgent labels an incident benign, then
// unlabelled, while its agent is connected: the suppressions reach the
// agent's feedback file and then leave it, while a label given on the host
// alone stays; labelled benign again, they come back.
func TestVerdictWithdrawnOnConnectedAgent(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	path := filepath.Join(t.TempDir(), feedback.FileName)
	local := feedback.Suppression{IncidentID: "0193a000-0000-7000-8000-0000000000ff", RuleID: "exec-from-tmp", Exe: "/tmp/x", ParentExe: "/usr/bin/make", Source: "rule", Added: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if _, err := feedback.Append(path, []feedback.Suppression{local}); err != nil {
		t.Fatal(err)
	}
	c := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a"}, FeedbackFile: path}
	runClient(t, c)
	inc := storyIncident("host-a")
	if err := c.Send(inc); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the incident to be acknowledged", func() bool { return c.Stats().Acked == 1 })
	incs := incidentClient(t, addr)

	labelBenign(t, incs, inc.GetId())
	waitUntil(t, "the verdict", func() bool { return c.Stats().Verdicts == 1 })
	list, err := feedback.Load(path)
	if err != nil || len(list) != 4 {
		t.Fatalf("after benign: %d suppressions, %v; want 4", len(list), err)
	}

	setLabel(t, incs, inc.GetId(), vigilv1.Label_LABEL_UNLABELLED)
	waitUntil(t, "the withdrawal", func() bool { return c.Stats().Withdrawals == 1 })
	list, err = feedback.Load(path)
	if err != nil || len(list) != 1 || list[0] != local {
		t.Fatalf("after unlabelled: %+v, %v; want only %+v", list, err, local)
	}

	labelBenign(t, incs, inc.GetId())
	waitUntil(t, "the verdict again", func() bool { return c.Stats().Verdicts == 2 })
	setLabel(t, incs, inc.GetId(), vigilv1.Label_LABEL_MALICIOUS)
	waitUntil(t, "the second withdrawal", func() bool { return c.Stats().Withdrawals == 2 })
	if list, err = feedback.Load(path); err != nil || len(list) != 1 || list[0] != local {
		t.Fatalf("after malicious: %+v, %v; want only %+v", list, err, local)
	}
}

// TestVerdictWithdrawnAtNextConnect withdraws a benign label while the
// agent is away: at its next connect the agent's feedback file loses the
// incident's suppressions, and a later connect sends nothing more.
func TestVerdictWithdrawnAtNextConnect(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	inc := storyIncident("host-a")
	if _, _, err := srv.Store().Put(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	incs := incidentClient(t, addr)
	labelBenign(t, incs, inc.GetId())
	path := filepath.Join(t.TempDir(), feedback.FileName)

	connect := func(wait string, done func(Stats) bool) {
		t.Helper()
		c := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a"}, FeedbackFile: path}
		ctx, cancel := context.WithCancel(context.Background())
		end := make(chan error, 1)
		go func() { end <- c.Run(ctx) }()
		waitUntil(t, wait, func() bool { return done(c.Stats()) })
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-end
		if st := c.Stats(); st.Verdicts > 1 || st.Withdrawals > 1 {
			t.Errorf("%s: stats %+v", wait, st)
		}
	}
	connect("the verdict", func(s Stats) bool { return s.Verdicts == 1 })
	if list, err := feedback.Load(path); err != nil || len(list) != 3 {
		t.Fatalf("after benign: %d suppressions, %v; want 3", len(list), err)
	}
	setLabel(t, incs, inc.GetId(), vigilv1.Label_LABEL_UNLABELLED)
	connect("the withdrawal", func(s Stats) bool { return s.Withdrawals == 1 && s.Verdicts == 0 })
	if got := readFile(t, path); got != emptyFeedback {
		t.Fatalf("feedback after the withdrawal:\n%s\nwant:\n%s", got, emptyFeedback)
	}
	// Nothing held: the next connect has nothing to withdraw.
	connect("a connect", func(s Stats) bool { return s.Connected && s.Withdrawals == 0 && s.Verdicts == 0 })
}
