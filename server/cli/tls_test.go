package cli_test

import (
	"path/filepath"
	"testing"

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
