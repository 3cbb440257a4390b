package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/server/cli"
)

// cliRule is a rule file for the fleet; its condition is on line 11.
const cliRule = `lists:
  fleet_tools: [fleetcheck]
rules:
  - id: fleet-rule
    title: Fleet tool run
    description: A program the fleet's admins watch for ran.
    severity: medium
    tactic: TA0002 Execution
    technique: T1059 Command and Scripting Interpreter
    on: [exec]
    condition: process.name in fleet_tools
    reason: "'fleet tool ' + process.exe"
`

// TestRulesPushShowClear sets the fleet's rules from a directory, refuses
// a broken one with the problem's place, shows the set and clears it.
func TestRulesPushShowClear(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	addr := srv.Addr()
	code, stdout, _ := run(t, nil, "--server", addr, "rules", "show")
	if code != cli.ExitOK || !strings.Contains(stdout, "no rule set") {
		t.Fatalf("show before any push: exit %d, %q", code, stdout)
	}

	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fleet.yaml", strings.Replace(cliRule, "process.name in", "process.nmae in", 1))
	write("notes.txt", "not a rule file")
	code, _, stderr := run(t, nil, "--server", addr, "rules", "push", dir)
	if code != cli.ExitError || !strings.Contains(stderr, `fleet.yaml:11:23: rule "fleet-rule": condition: undefined field 'nmae'`) {
		t.Fatalf("push of a broken set: exit %d, stderr %q", code, stderr)
	}

	write("fleet.yaml", cliRule)
	code, stdout, stderr = run(t, nil, "--server", addr, "rules", "push", dir, "--requester", "alice")
	if code != cli.ExitOK || !strings.HasPrefix(stdout, "rule set version 1 (sha256:") || !strings.Contains(stdout, ": 1 file, sent to 0 connected agents") {
		t.Fatalf("push: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = run(t, nil, "--server", addr, "rules", "push", dir)
	if code != cli.ExitOK || !strings.HasPrefix(stdout, "rule set unchanged: version 1") {
		t.Errorf("second push: exit %d, %q", code, stdout)
	}
	code, stdout, _ = run(t, nil, "--server", addr, "rules", "show", "--files")
	if code != cli.ExitOK || !strings.Contains(stdout, "Version:  1\n") || !strings.Contains(stdout, "Set by:   alice\n") ||
		!strings.Contains(stdout, "  fleet.yaml") || !strings.Contains(stdout, "# --- fleet.yaml\n"+cliRule) {
		t.Errorf("show --files: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, nil, "--server", addr, "rules", "show", "--json")
	if code != cli.ExitOK || !strings.Contains(stdout, `"version":"1"`) || !strings.Contains(stdout, `"name":"fleet.yaml"`) {
		t.Errorf("show --json: exit %d, %q", code, stdout)
	}

	empty := t.TempDir()
	if code, _, stderr = run(t, nil, "--server", addr, "rules", "push", empty); code != cli.ExitError || !strings.Contains(stderr, "vigilctl rules clear") {
		t.Errorf("push of an empty directory: exit %d, %q", code, stderr)
	}
	if code, stdout, _ = run(t, nil, "--server", addr, "rules", "clear"); code != cli.ExitOK || !strings.HasPrefix(stdout, "rule set version 2 ") {
		t.Errorf("clear: exit %d, %q", code, stdout)
	}
	if code, _, _ = run(t, nil, "--server", addr, "rules", "push"); code != cli.ExitUsage {
		t.Errorf("push without DIR: exit %d", code)
	}
}
