package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// TestOnActionGoesThroughTheEngine runs server commands through the
// responder: the engine's safety rules apply, the requester is the
// server's, and the record is in the audit log and on its incident.
func TestOnActionGoesThroughTheEngine(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{StateDir: dir}
	cfg.Response.Mode = "recommend"
	r, err := newResponder(cfg, rules.Allow{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var attached []string
	r.record = func(incidentID string, rec *vigilv1.ActionRecord) {
		attached = append(attached, incidentID+" "+rec.GetId())
	}

	rec := r.onAction(&vigilv1.ActionCommand{
		CommandId: "c1", Action: "kill", Target: "pid:1", IncidentId: "inc-1", Reason: "test",
		DryRun: true, Requester: "alice",
	})
	if rec.GetResult() != "refused" || rec.GetRequester() != "server:alice" || rec.GetIncidentId() != "inc-1" ||
		!rec.GetDryRun() || rec.GetMode() != "recommend" || rec.GetId() == "" {
		t.Errorf("kill pid:1 from the server = %v, want a refused dry run by server:alice", rec)
	}
	if len(attached) != 1 || attached[0] != "inc-1 "+rec.GetId() {
		t.Errorf("records attached to incidents: %q", attached)
	}
	if rec := r.onAction(&vigilv1.ActionCommand{Action: "isolate", Target: "pid:1"}); rec.GetRequester() != "server:unknown" || rec.GetResult() != "refused" {
		t.Errorf("command without requester = %v", rec)
	}
	audit, err := os.ReadFile(filepath.Join(dir, AuditName))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(audit), "\n"); n != 2 || !strings.Contains(string(audit), `"requester":"server:alice"`) {
		t.Errorf("audit log has %d lines:\n%s", n, audit)
	}
}
