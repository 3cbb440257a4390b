package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/server/cli"
	"github.com/vigil-sensor/vigil/server/pki"
)

func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"ca", "init", dir, "--host", "localhost,127.0.0.1"}, &out, &errOut); code != 0 {
		t.Fatalf("ca init: exit %d, %s", code, errOut.String())
	}
	for _, f := range []string{pki.CAFile, pki.CAKeyFile, pki.ServerFile, pki.ServerKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want a file only its owner reads", f, fi, err)
		}
	}
	if code := run(context.Background(), []string{"ca", "init", dir}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "already exists") {
		t.Errorf("second ca init: exit %d, %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"ca", "issue", dir, "web-1"}, &out, &errOut); code != 0 {
		t.Fatalf("ca issue: exit %d, %s", code, errOut.String())
	}
	if _, err := pki.ClientConfig(filepath.Join(dir, pki.CAFile), filepath.Join(dir, "web-1.pem"), filepath.Join(dir, "web-1-key.pem")); err != nil {
		t.Errorf("issued certificate: %v", err)
	}
	for _, args := range [][]string{{"ca"}, {"ca", "issue", dir}, {"ca", "frob"}, {"--tls-cert", "x"}, {"--client-ca", "x"}, {"--agent-rate", "-1"}} {
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// TestSecureServerAndVigilctl runs the real program with TLS, agent
// certificates and tokens, and vigilctl against it.
func TestSecureServerAndVigilctl(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "pki")
	if err := pki.Init(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(tmp, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"viewer-token-0123456789": {"name": "vera", "role": "viewer"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := server(t, "--listen", "127.0.0.1:0", "--db", filepath.Join(tmp, "server.db"), "--metrics", "", "--console", "",
		"--tls-cert", filepath.Join(dir, pki.ServerFile), "--tls-key", filepath.Join(dir, pki.ServerKeyFile),
		"--client-ca", filepath.Join(dir, pki.CAFile), "--tokens", tokens)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("no startup line: %v", lines.Err())
	}
	m := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("startup line %q", lines.Text())
	}
	go func() {
		for lines.Scan() {
		}
	}()

	ctl := func(env map[string]string, args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"--server", m[1], "--timeout", "5s"}, args...), &out, &errOut,
			func(k string) string { return env[k] })
		return code, errOut.String()
	}
	ca := filepath.Join(dir, pki.CAFile)
	if code, msg := ctl(nil, "--ca", ca, "incidents", "list"); code != 1 || !strings.Contains(msg, "not authenticated") {
		t.Errorf("without a token: exit %d, %s", code, msg)
	}
	if code, msg := ctl(nil, "--ca", ca, "--token", "viewer-token-0123456789", "incidents", "list"); code != 0 {
		t.Errorf("with --token: exit %d, %s", code, msg)
	}
	if code, msg := ctl(map[string]string{cli.TokenEnv: "viewer-token-0123456789"}, "--ca", ca, "agents"); code != 0 {
		t.Errorf("with $VIGIL_TOKEN: exit %d, %s", code, msg)
	}
	if code, msg := ctl(nil, "--token", "viewer-token-0123456789", "incidents", "list"); code != 1 {
		t.Errorf("plaintext to a TLS server: exit %d, %s", code, msg)
	}
}
