package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// TestHostnameForHostID: a hostname that one agent has works where a host
// id is wanted; an unknown one and an ambiguous one are errors.
func TestHostnameForHostID(t *testing.T) {
	srv, incs := newServer(t) // host 0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f, hostname web-1
	env := map[string]string{"VIGIL_SERVER": srv.Addr()}
	host := incs[0].GetHostId()

	code, out, errOut := run(t, env, "incidents", "list", "--host", "web-1", "--json")
	if code != cli.ExitOK || strings.Count(out, "\n") != 3 {
		t.Errorf("list --host web-1: exit %d, %d lines, stderr %q; want 3 incidents", code, strings.Count(out, "\n"), errOut)
	}
	// The reporting agent has hung up; wait until the server has seen it go.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, agents, _ := run(t, env, "agents", "--json"); !strings.Contains(agents, `"connected":true`) {
			break
		}
	}
	code, _, errOut = run(t, env, "respond", "web-1", "kill", "pid:1", "--dry-run")
	if want := "vigilctl: agent of host " + host + " is not connected\n"; code != cli.ExitError || errOut != want {
		t.Errorf("respond web-1: exit %d, stderr %q; want %q", code, errOut, want)
	}
	code, out, errOut = run(t, env, "incidents", "list", "--host", "vm")
	if want := "vigilctl: no agent has host id or hostname \"vm\" (see 'vigilctl agents')\n"; code != cli.ExitError || errOut != want || out != "" {
		t.Errorf("list --host vm: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}

	other := storetest.NewIncident("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	report(t, srv.Addr(), other) // also hostname web-1
	for _, args := range [][]string{
		{"incidents", "list", "--host", "web-1"},
		{"respond", "web-1", "kill", "pid:1", "--dry-run"},
	} {
		code, _, errOut = run(t, env, args...)
		if !strings.HasPrefix(errOut, `vigilctl: hostname "web-1" is ambiguous: agents `) ||
			!strings.Contains(errOut, host) || !strings.Contains(errOut, other.GetHostId()) || code != cli.ExitError {
			t.Errorf("%q with two web-1: exit %d, stderr %q", args, code, errOut)
		}
	}
	// A host id still works as one.
	code, out, _ = run(t, env, "incidents", "list", "--host", other.GetHostId(), "--json")
	if code != cli.ExitOK || strings.Count(out, "\n") != 1 {
		t.Errorf("list --host %s: exit %d, output %q", other.GetHostId(), code, out)
	}
}

// TestStoredHostIDWithoutAgent: incidents of a host whose agent the server
// has not seen since it started are still listed by its host id.
func TestStoredHostIDWithoutAgent(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	inc := storetest.NewIncident("5e6f7a8b9c0d1e2f3a4b5c6d1a2b3c4d", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	if _, _, err := srv.Store().Put(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_SERVER": srv.Addr()}
	code, out, errOut := run(t, env, "incidents", "list", "--host", inc.GetHostId(), "--json")
	if code != cli.ExitOK || strings.Count(out, "\n") != 1 || errOut != "" {
		t.Errorf("list --host %s: exit %d, output %q, stderr %q; want its incident", inc.GetHostId(), code, out, errOut)
	}
	code, _, errOut = run(t, env, "respond", inc.GetHostId(), "kill", "pid:1", "--dry-run")
	if want := "vigilctl: no agent has host id or hostname \"" + inc.GetHostId() + "\" (see 'vigilctl agents')\n"; code != cli.ExitError || errOut != want {
		t.Errorf("respond to a host without agent: exit %d, stderr %q; want %q", code, errOut, want)
	}
}
