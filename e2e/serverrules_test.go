package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// fleetRuleFile is a rule the fleet's admins push: any exec of a program
// named vigil-fleetck.
const fleetRuleFile = `rules:
  - id: fleet-tool-run
    title: Fleet tool run
    description: A program the fleet's admins watch for ran.
    severity: medium
    tactic: TA0002 Execution
    technique: T1059 Command and Scripting Interpreter
    on: [exec]
    condition: process.name == 'vigil-fleetck'
    reason: "'fleet tool ' + process.exe"
`

// TestServerRuleSet pushes a rule set with vigilctl to the real server and
// agent: a broken set is refused with its place, a good one reaches the
// running agent, which reports its version and raises the new rule on a
// real exec, and `vigil-agent rules list` shows the set the agent kept.
func TestServerRuleSet(t *testing.T) {
	s := startStack(t)
	incidents := collectIncidents(s.subscribe(t, 0))
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(s.bins, "vigilctl"), append([]string{"--server", s.addr}, args...)...).CombinedOutput()
		return string(out), err
	}
	policy := func() *vigilv1.Agent {
		out, err := ctl("agents", "--json")
		if err != nil {
			t.Fatalf("vigilctl agents: %v\n%s", err, out)
		}
		lines := bufio.NewScanner(strings.NewReader(out))
		lines.Scan()
		ag := &vigilv1.Agent{}
		if err := protojson.Unmarshal(lines.Bytes(), ag); err != nil {
			t.Fatalf("vigilctl agents --json: %v: %q", err, out)
		}
		return ag
	}
	dir := filepath.Join(s.scratch, "fleet-rules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(text string) {
		if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(fleetRuleFile, "process.name ==", "process.nmae ==", 1))
	if out, err := ctl("rules", "push", dir); err == nil || !strings.Contains(out, `fleet.yaml:9:23: rule "fleet-tool-run": condition: undefined field 'nmae'`) {
		t.Fatalf("push of a broken set: %v\n%s", err, out)
	}

	write(fleetRuleFile)
	if out, err := ctl("rules", "push", dir); err != nil || !strings.HasPrefix(out, "rule set version 1 ") {
		t.Fatalf("push: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "the agent to run version 1", func() bool {
		ag := policy()
		return ag.GetPolicyVersion() == 1 && ag.GetLastRuleSetResult().GetApplied()
	})
	if !strings.Contains(s.agentLog.String(), "server rule set applied") {
		t.Errorf("agent log does not say it applied the set")
	}

	// The new rule fires on a real exec.
	tool := filepath.Join(s.scratch, "vigil-fleetck")
	copyTrue(t, tool)
	pid := run(t, exec.Command(tool))
	inc := incidents.await(t, 5*time.Second, "fleet-tool-run incident", byPID("fleet-tool-run", pid))
	if sig := signalOf(inc, "fleet-tool-run", pid); sig.GetExe() != tool {
		t.Errorf("fleet-tool-run signal on %q, want %s", sig.GetExe(), tool)
	}

	// The agent keeps the set: rules list shows it, as the agent would run.
	state := filepath.Join(s.scratch, "agent")
	out, err := exec.Command(filepath.Join(s.bins, "vigil-agent"), "rules", "list", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nfleet-tool-run ") || !strings.Contains(string(out), "server rule set: version 1 (sha256:") {
		t.Errorf("vigil-agent rules list: %v\n%s", err, out)
	}
	if out, err := ctl("rules", "show"); err != nil || !strings.Contains(out, "Version:  1\n") || !strings.Contains(out, "fleet.yaml") {
		t.Errorf("vigilctl rules show: %v\n%s", err, out)
	}
}
