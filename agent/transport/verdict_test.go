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
