package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/pki"
)

func TestCAEnrollToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ca", "init", dir}, &out, &errOut); code != 0 {
		t.Fatalf("ca init: exit %d, %s", code, errOut.String())
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), pki.Fingerprint(ca.Cert)) {
		t.Errorf("ca init printed %q, want the CA fingerprint", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"ca", "fingerprint", dir}, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != pki.Fingerprint(ca.Cert) {
		t.Errorf("ca fingerprint: exit %d, %q", code, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"ca", "enroll-token", dir, "--ttl", "2h", "--uses", "3", "--name", "web-1"}, &out, &errOut); code != 0 {
		t.Fatalf("ca enroll-token: exit %d, %s", code, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	if !strings.HasPrefix(token, "enroll-") || strings.Contains(token, "\n") || !strings.Contains(errOut.String(), "--ca-fingerprint "+pki.Fingerprint(ca.Cert)) {
		t.Errorf("ca enroll-token: stdout %q, stderr %q", out.String(), errOut.String())
	}
	list, err := enroll.Tokens{Path: filepath.Join(dir, enroll.TokensFile)}.List()
	if err != nil || len(list) != 1 || list[0].Uses != 3 || list[0].Name != "web-1" ||
		time.Until(list[0].Expires) > 2*time.Hour || time.Until(list[0].Expires) < time.Hour {
		t.Errorf("tokens %+v, %v", list, err)
	}
	for _, args := range [][]string{{"ca", "enroll-token"}, {"ca", "enroll-token", dir, "--uses", "0"}, {"ca", "fingerprint"},
		{"--enroll-ca", dir}, {"--enroll-tokens", "x"}} {
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code := run(context.Background(), []string{"ca", "enroll-token", dir, "--name", "../x"}, &out, &errOut); code != 1 {
		t.Errorf("enroll-token with a bad name: exit %d, want 1", code)
	}
}
