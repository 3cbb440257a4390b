package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The test binary doubles as vigilctl when this variable is set, so that
// tests see the real exit status of the real program.
const runMainEnv = "VIGILCTL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		args []string
		env  string
		code int
		want string
	}{
		{[]string{"--help"}, "", 0, ""},
		{[]string{"frob"}, "", 2, "vigilctl: unknown command \"frob\"\n"},
		{[]string{"incidents", "list", "--nope"}, "", 2, "vigilctl: flag provided but not defined: -nope\n"},
		{[]string{"incidents", "list"}, "127.0.0.1:1", 1, "vigilctl: cannot reach vigil-server at 127.0.0.1:1: "},
	}
	for _, tt := range tests {
		cmd := exec.Command(os.Args[0], tt.args...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1", "VIGIL_SERVER="+tt.env)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.HasPrefix(stderr.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and prefix %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
}
