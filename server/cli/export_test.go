package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// ocsfLines returns what export should print for these incidents as st
// holds them, in order.
func ocsfLines(t *testing.T, incs []*vigilv1.Incident, st store.Store) string {
	t.Helper()
	var b strings.Builder
	for _, inc := range incs {
		stored, err := st.Get(context.Background(), inc.GetId())
		if err != nil {
			t.Fatal(err)
		}
		line, err := ocsf.Marshal(stored)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
	}
	return b.String()
}

func TestExportOCSF(t *testing.T) {
	srv, incs := newServer(t)
	env := map[string]string{cli.ServerEnv: srv.Addr()}

	// Everything stored, oldest first, then exit.
	code, out, errOut := run(t, env, "incidents", "export", "--format", "ocsf")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if want := ocsfLines(t, incs, srv.Store()); out != want {
		t.Errorf("export:\n%s\nwant:\n%s", out, want)
	}
	var f ocsf.Finding
	if err := json.Unmarshal([]byte(strings.SplitAfter(out, "\n")[1]), &f); err != nil {
		t.Fatal(err)
	}
	if f.ClassUID != 2004 || f.CategoryUID != 2 || f.SeverityID != 5 || f.Info.Analytic.Name != "memfd-exec" ||
		f.Process.File.Path != "/memfd:payload" || f.Metadata.Sequence != 2 || f.Metadata.Product.Name != "Vigil" {
		t.Errorf("second line: %+v", f)
	}

	// Resume after a cursor, filters, and the default format.
	code, out, _ = run(t, env, "incidents", "export", "--after-cursor", "2")
	if want := ocsfLines(t, incs[2:], srv.Store()); code != cli.ExitOK || out != want {
		t.Errorf("--after-cursor 2: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	code, out, _ = run(t, env, "incidents", "export", "--after-cursor", "3")
	if code != cli.ExitOK || out != "" {
		t.Errorf("--after-cursor 3: exit %d %q, want nothing", code, out)
	}
	code, out, _ = run(t, env, "incidents", "export", "--min-severity", "high")
	if want := ocsfLines(t, incs[:2], srv.Store()); code != cli.ExitOK || out != want {
		t.Errorf("--min-severity high: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	code, out, _ = run(t, env, "incidents", "export", "--format", "json", "--after-cursor", "2")
	if code != cli.ExitOK || cursorOf(t, strings.TrimSpace(out)) != 3 {
		t.Errorf("--format json: exit %d %q", code, out)
	}
	code, _, errOut = run(t, env, "incidents", "export", "--format", "xml")
	if want := "vigilctl: --format \"xml\": want ocsf or json\nRun 'vigilctl incidents export --help' for usage.\n"; code != cli.ExitUsage || errOut != want {
		t.Errorf("--format xml: exit %d %q", code, errOut)
	}
}

func TestExportFollow(t *testing.T) {
	srv, incs := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"--server", srv.Addr(), "incidents", "export", "--follow", "--after-cursor", "1"},
			&stdout, &stderr, func(string) string { return "" })
	}()
	waitLines(t, &stdout, 2)
	more := storetest.NewIncident("0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "r", vigilv1.Severity_SEVERITY_MEDIUM)
	report(t, srv.Addr(), more)
	waitLines(t, &stdout, 3)
	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Errorf("export --follow exit %d after Ctrl-C, stderr %q", code, stderr.String())
	}
	if want := ocsfLines(t, append(incs[1:], more), srv.Store()); stdout.String() != want {
		t.Errorf("export --follow:\n%s\nwant:\n%s", stdout.String(), want)
	}
}
