package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// TestServerRequestsDryRunKill asks the real agent, through vigil-server
// and vigilctl, for a dry-run kill of a running process: the agent checks
// it and answers "dry-run", the process lives on, and the server lists the
// action and the agent.
func TestServerRequestsDryRunKill(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agents, err := vigilv1.NewFleetServiceClient(s.conn).ListAgents(ctx, &vigilv1.ListAgentsRequest{})
	if err != nil || len(agents.GetAgents()) != 1 || !agents.GetAgents()[0].GetConnected() {
		t.Fatalf("ListAgents = %v, %v; want the one connected agent", agents.GetAgents(), err)
	}
	host := agents.GetAgents()[0].GetHostId()

	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	pid := strconv.Itoa(victim.Process.Pid)

	vigilctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(s.bins, "vigilctl"), append([]string{"--server", s.addr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("vigilctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := vigilctl("respond", host, "kill", "pid:"+pid, "--dry-run", "--requester", "e2e", "--reason", "server e2e")
	for _, want := range []string{"Result:     dry-run", "Requester:  server:e2e", "Action:     kill pid:" + pid} {
		if !strings.Contains(out, want) {
			t.Errorf("vigilctl respond output lacks %q:\n%s", want, out)
		}
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the process is gone after a dry run: %v", err)
	}
	out = vigilctl("actions", "--host", host)
	if !strings.Contains(out, "kill (dry run)") || !strings.Contains(out, "server:e2e") {
		t.Errorf("vigilctl actions:\n%s\nwant the dry-run kill", out)
	}
	out = vigilctl("agents")
	if !strings.Contains(out, host) || !strings.Contains(out, " yes ") {
		t.Errorf("vigilctl agents:\n%s\nwant the connected agent", out)
	}
}
