package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/internal/version"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/pki"
)

// TestTLSServerWithoutCA: vigilctl without --ca against a TLS server says
// to pass --ca, and $VIGIL_CA is the default of --ca.
func TestTLSServerWithoutCA(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: filepath.Join(t.TempDir(), "server.db"),
		TLSCert: filepath.Join(dir, pki.ServerFile), TLSKey: filepath.Join(dir, pki.ServerKeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, srv) })

	code, out, errOut := run(t, nil, "--server", srv.Addr(), "incidents", "list")
	want := "vigilctl: the server at " + srv.Addr() + " speaks TLS: pass --ca FILE (or set $VIGIL_CA)\n"
	if code != cli.ExitError || out != "" || errOut != want {
		t.Errorf("list without --ca: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	env := map[string]string{"VIGIL_SERVER": srv.Addr(), "VIGIL_CA": filepath.Join(dir, pki.CAFile)}
	code, out, errOut = run(t, env, "incidents", "list")
	if want := "CURSOR  TIME  SEVERITY  HOST  RULE  TECHNIQUE  PID  EXE  TITLE\n"; code != cli.ExitOK || out != want {
		t.Errorf("list with $VIGIL_CA: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestGlobalFlagsAfterTheCommand: --server, --ca, --token and --timeout
// work after the command as before it, and each command's help lists them.
func TestGlobalFlagsAfterTheCommand(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: filepath.Join(t.TempDir(), "server.db"),
		TLSCert: filepath.Join(dir, pki.ServerFile), TLSKey: filepath.Join(dir, pki.ServerKeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, srv) })
	ca := filepath.Join(dir, pki.CAFile)
	const empty = "CURSOR  TIME  SEVERITY  HOST  RULE  TECHNIQUE  PID  EXE  TITLE\n"
	code, out, errOut := run(t, nil, "incidents", "list", "--server", srv.Addr(), "--ca", ca, "--timeout", "5s", "--token", "unused-token-0123456789")
	if code != cli.ExitOK || out != empty || errOut != "" {
		t.Errorf("list with global flags after it: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = run(t, nil, "agents", "--ca", ca, "--server", srv.Addr())
	if want := "HOST  HOSTNAME  VERSION  KERNEL  CONNECTED  LAST SEEN  LOSSES  POLICY\n"; code != cli.ExitOK || out != want {
		t.Errorf("agents with global flags after it: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = run(t, nil, "incidents", "list", "--server", srv.Addr(), "--ca", ca, "--timeout", "0s")
	if want := "vigilctl: --timeout 0s is not positive\nRun 'vigilctl --help' for usage.\n"; code != cli.ExitUsage || errOut != want {
		t.Errorf("--timeout 0s after the command: exit %d, stderr %q; want %q", code, errOut, want)
	}
	for _, args := range [][]string{
		{"incidents", "list"}, {"incidents", "tail"}, {"incidents", "show"}, {"incidents", "update"}, {"incidents", "export"},
		{"agents"}, {"respond"}, {"actions"}, {"rules"}, {"rules", "push"}, {"rules", "show"},
	} {
		code, out, _ := run(t, nil, append(args, "--help")...)
		for _, flag := range []string{"--server ADDR", "--timeout DURATION", "--token TOKEN", "--ca FILE"} {
			if code != cli.ExitOK || !strings.Contains(out, "\n  "+flag+" ") {
				t.Errorf("%q --help: exit %d, lacks %s:\n%s", args, code, flag, out)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := run(t, nil, "--version")
	if code != cli.ExitOK || out != "vigilctl "+version.Version+"\n" || errOut != "" {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
