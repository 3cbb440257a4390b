package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCAIssueRefusesToReplace: a second ca issue of the same name keeps
// the key and certificate unless --force; --help of ca issue and ca
// fingerprint prints usage.
func TestCAIssueRefusesToReplace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	runCA := func(args ...string) int {
		out.Reset()
		errOut.Reset()
		return run(context.Background(), append([]string{"ca"}, args...), &out, &errOut)
	}
	if code := runCA("init", dir); code != 0 {
		t.Fatalf("ca init: exit %d, %s", code, errOut.String())
	}
	if code := runCA("issue", dir, "web-1"); code != 0 {
		t.Fatalf("ca issue: exit %d, %s", code, errOut.String())
	}
	key, _ := os.ReadFile(filepath.Join(dir, "web-1-key.pem"))
	code := runCA("issue", dir, "web-1")
	want := "vigil-server: ca issue: " + filepath.Join(dir, "web-1.pem") + " already exists (pass --force to replace it)\n"
	if code != 1 || errOut.String() != want {
		t.Errorf("second ca issue: exit %d, stderr %q; want 1, %q", code, errOut.String(), want)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "web-1-key.pem")); !bytes.Equal(again, key) {
		t.Error("a refused ca issue replaced the key")
	}
	if code := runCA("issue", dir, "web-1", "--force"); code != 0 {
		t.Fatalf("ca issue --force: exit %d, %s", code, errOut.String())
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "web-1-key.pem")); bytes.Equal(again, key) {
		t.Error("ca issue --force kept the old key")
	}
	for _, args := range [][]string{{"issue", "--help"}, {"fingerprint", "--help"}, {"fingerprint", "-h"}} {
		code := runCA(args...)
		if code != 0 || !strings.HasPrefix(out.String(), "vigil-server ca makes a development certificate authority") || errOut.Len() != 0 {
			t.Errorf("ca %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}
