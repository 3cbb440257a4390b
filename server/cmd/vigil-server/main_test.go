package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/pgtest"
	"github.com/vigil-sensor/vigil/server/cli"
)

// The test binary doubles as vigil-server when this variable is set, so
// that tests run the real program in its own process.
const runMainEnv = "VIGIL_SERVER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// server returns a command that runs vigil-server with args.
func server(t *testing.T, args ...string) *exec.Cmd {
	// The console's and the metrics' default addresses are fixed ports:
	// keep them off unless a test asks for them, so that tests do not fight
	// over them (or with a running demo).
	for _, flag := range []string{"--console", "--metrics"} {
		if !slices.Contains(args, flag) {
			args = append(args, flag, "")
		}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	return cmd
}

func TestStartServeAndStopOnSIGTERM(t *testing.T) {
	db := filepath.Join(t.TempDir(), "lib", "vigil", "server.db")
	cmd := server(t, "--listen", "127.0.0.1:0", "--db", db, "--metrics", "")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The startup line names the address and the database.
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("no startup line: %v", lines.Err())
	}
	first := lines.Text()
	m := regexp.MustCompile(`level=INFO msg="vigil-server started" listen=(127\.0\.0\.1:\d+) db=(\S+)$`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("startup line %q", first)
	}
	if m[2] != db {
		t.Errorf("startup line names db %q, want %q", m[2], db)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("database not created: %v", err)
	}

	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), []string{"--server", m[1], "incidents", "list"}, &out, &errOut, os.Getenv); code != 0 {
		t.Errorf("vigilctl against the server: exit %d, %s", code, errOut.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, rest)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop after SIGTERM")
	}
	if !strings.Contains(string(rest), `msg="vigil-server stopped"`) {
		t.Errorf("no stop line in:\n%s", rest)
	}
}

func TestStartErrors(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"address in use", []string{"--listen", lis.Addr().String(), "--db", filepath.Join(dir, "a.db")}, 1,
			"listen on " + lis.Addr().String() + ": address already in use"},
		{"db is a directory", []string{"--listen", "127.0.0.1:0", "--db", dir}, 1,
			"database path " + dir + " is a directory"},
		{"postgres unreachable", []string{"--listen", "127.0.0.1:0", "--db", "postgres://vigil:Secr3t-pw@127.0.0.1:1/vigil?connect_timeout=5"}, 1,
			"start server: open postgres database vigil on 127.0.0.1:1: "},
		{"postgres bad url", []string{"--listen", "127.0.0.1:0", "--db", "postgresql://vigil:Secr3t-pw@127.0.0.1:port/vigil"}, 1,
			"start server: open postgres: cannot parse"},
		{"bad log level", []string{"--log-level", "loud"}, 2,
			"vigil-server: --log-level \"loud\": want debug, info, warn or error\nRun 'vigil-server --help' for usage.\n"},
		{"bad flag", []string{"--port", "1"}, 2,
			"vigil-server: flag provided but not defined: -port\n"},
		{"argument", []string{"serve"}, 2, "vigil-server: unexpected argument \"serve\"\n"},
	}
	for _, tt := range tests {
		cmd := server(t, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d containing %q", tt.name, code, stderr.String(), tt.code, tt.want)
		}
		if strings.Contains(stderr.String(), "Secr3t") {
			t.Errorf("%s: stderr shows the password: %q", tt.name, stderr.String())
		}
	}
}

// TestPostgresDB runs the server on a PostgreSQL database given by URL:
// it starts, serves and names the database in its log without the
// password.
func TestPostgresDB(t *testing.T) {
	dsn := pgtest.New(t)
	// The test server trusts local connections: the password is ignored.
	dsn = strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:Secr3t-pw@", 1)
	cmd := server(t, "--listen", "127.0.0.1:0", "--db", dsn)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("no startup line: %v", lines.Err())
	}
	first := lines.Text()
	m := regexp.MustCompile(`msg="vigil-server started" listen=(127\.0\.0\.1:\d+) db=`).FindStringSubmatch(first)
	if m == nil || strings.Contains(first, "Secr3t") || !strings.Contains(first, "postgres:xxxxx@") {
		t.Fatalf("startup line %q: want the address and the database with its password hidden", first)
	}
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), []string{"--server", m[1], "incidents", "list"}, &out, &errOut, os.Getenv); code != 0 {
		t.Errorf("vigilctl against the server: exit %d, %s", code, errOut.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, rest)
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--help"}, &stdout, &stderr)
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"--listen ADDR", "127.0.0.1:7470", "--db PATH", "/var/lib/vigil/server.db", "postgres://", "--log-level LEVEL", "Example:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
