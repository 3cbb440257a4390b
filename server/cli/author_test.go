package cli_test

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// TestAuthorIsTheTokenHolder: with --tokens the server records the
// token's holder as the note's author and the label's, whatever --author
// says.
func TestAuthorIsTheTokenHolder(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("responder-token-0123456789: {name: rory, role: responder}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: filepath.Join(t.TempDir(), "server.db"), TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, srv) })
	inc := storetest.NewIncident("0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	if _, _, err := srv.Store().Put(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_SERVER": srv.Addr(), "VIGIL_TOKEN": "responder-token-0123456789"}
	code, _, errOut := run(t, env, "incidents", "update", inc.GetId(), "--note", "mine", "--label", "malicious", "--author", "bob")
	if code != cli.ExitOK || errOut != "" {
		t.Fatalf("update: exit %d, stderr %q", code, errOut)
	}
	stored, err := srv.Store().Get(context.Background(), inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	tr := stored.GetTriage()
	if got := tr.GetNotes()[0].GetAuthor(); got != "rory" {
		t.Errorf("note author %q, want rory (the token's holder)", got)
	}
	if got := tr.GetLabelAuthor(); got != "rory" {
		t.Errorf("label author %q, want rory (the token's holder)", got)
	}
}

// TestAuthorDefault: without tokens the client's author is kept; it
// defaults to $USER, else to the OS user's name, never "-".
func TestAuthorDefault(t *testing.T) {
	srv, incs := newServer(t)
	id := incs[0].GetId()
	me, err := user.Current()
	if err != nil {
		t.Skip("no OS user:", err)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"USER": "alice"}, []string{"--author", "bob"}, "bob"},
		{map[string]string{"USER": "alice"}, nil, "alice"},
		{map[string]string{}, nil, me.Username},
	} {
		tc.env["VIGIL_SERVER"] = srv.Addr()
		args := append([]string{"incidents", "update", id, "--note", "n"}, tc.args...)
		if code, _, errOut := run(t, tc.env, args...); code != cli.ExitOK {
			t.Fatalf("update %q: exit %d, stderr %q", tc.args, code, errOut)
		}
		stored, err := srv.Store().Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		notes := stored.GetTriage().GetNotes()
		if got := notes[len(notes)-1].GetAuthor(); got != tc.want {
			t.Errorf("env %v, flags %q: author %q, want %q", tc.env, tc.args, got, tc.want)
		}
	}
}
