// Package pgtest starts a private PostgreSQL server for a test: its own
// data directory in a temporary directory, reachable only through a Unix
// socket in that directory, stopped and removed when the test ends. Tests
// of the PostgreSQL store use it instead of a shared server (or a mock), so
// that they run anywhere the PostgreSQL server binaries are installed, in
// parallel with anything else, and leave nothing behind. Benchmarks start
// one the same way with Launch.
//
// It lives apart from testutil because it links pgx and os/user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// Port is the port number of every test server. The server listens on no
// TCP port at all; the number only names its Unix socket
// (.s.PGSQL.5432), which lives in the server's own directory.
const Port = 5432

// Superuser is the database superuser every test server is created with.
// Local connections are trusted: no password is needed.
const Superuser = "postgres"

// startTimeout bounds how long Start waits for the server to accept
// connections.
const startTimeout = 30 * time.Second

// Server is a running private PostgreSQL server.
type Server struct {
	// Dir is the temporary directory holding the data directory (data),
	// the server log (postgres.log) and the Unix socket.
	Dir string
	// BinDir is the directory of the PostgreSQL programs used.
	BinDir string

	postgres *exec.Cmd
	exited   chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Options changes how Launch starts a server.
type Options struct {
	// Durable keeps PostgreSQL's own durability settings (fsync,
	// synchronous commit, full page writes), as a production server has
	// them, for benchmarks. By default they are off: tests need speed, not
	// data that survives a crash of the machine.
	Durable bool
}

// BinDir returns the directory holding the PostgreSQL server programs
// (initdb and postgres): the newest /usr/lib/postgresql/<version>/bin, where
// Debian and Ubuntu install them, or else the directory of an initdb found
// on PATH.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var ok []string
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			ok = append(ok, d)
		}
	}
	if len(ok) > 0 {
		// Newest version first: compare the version directories as numbers.
		version := func(d string) float64 {
			v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
			return v
		}
		sort.Slice(ok, func(i, j int) bool { return version(ok[i]) > version(ok[j]) })
		return ok[0], nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server programs (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH; install the Debian package postgresql (scripts/install-deps.sh --test)")
}

// isExec reports whether path is an executable regular file.
func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Require returns BinDir, or ends the test when PostgreSQL is not
// installed: it skips with a message saying what to install, except under
// CI=true, where it fails (CI installs PostgreSQL, so a test must never be
// skipped there silently).
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := BinDir()
	if err == nil {
		return dir
	}
	if testutil.InCI() {
		tb.Fatalf("%v; CI=true forbids skipping this test", err)
	}
	tb.Skip(err.Error())
	return ""
}

// New starts a private server for the test, creates a database called
// vigil in it and returns its DSN. See Start.
func New(tb testing.TB) string {
	tb.Helper()
	return Start(tb).CreateDatabase(tb, "vigil")
}

// Start initializes a data directory in a fresh temporary directory, starts
// a PostgreSQL server on it and waits until it accepts connections. The
// server listens only on a Unix socket in that directory. When the test
// ends, whether it passed or not, the server is stopped and the directory
// removed; if the test failed, the server log is written to the test log.
//
// PostgreSQL refuses to run as root, so as root the server runs as the
// postgres user (which the Debian package creates); otherwise it runs as
// the current user. It is tuned for tests, not for keeping data: fsync is
// off. Start skips or fails the test as Require does when PostgreSQL is not
// installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	Require(tb)
	s, err := Launch(Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		var log string
		if tb.Failed() {
			log = s.Log() // Stop removes it
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
		if log != "" {
			tb.Logf("postgres log (%s):\n%s", s.Dir, log)
		}
	})
	return s
}

// Launch does what Start does for a program that is not a test (a
// benchmark, say): it starts a private server and waits until it accepts
// connections, and the caller must call Stop, which stops the server and
// removes its directory. On error nothing is left behind; the error
// carries the server log.
func Launch(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	// The socket path (dir + "/.s.PGSQL.5432") must fit in 107 bytes, and
	// the postgres user must be able to reach the directory: /tmp suits
	// both better than an arbitrary TMPDIR.
	base := "/tmp"
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "vigil-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("create the PostgreSQL directory: %w", err)
	}
	s := &Server{Dir: dir, BinDir: bin}
	fail := func(err error) (*Server, error) {
		if log := s.Log(); log != "" {
			err = fmt.Errorf("%w\n%s", err, log)
		}
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("hand %s to the postgres user: %w", dir, err))
		}
	}
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logFile.Close()

	// 1. The data directory: trust local connections, no locale (so that
	// results do not depend on the host), no fsync while writing it.
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"--pgdata", filepath.Join(dir, "data"),
		"--username", Superuser,
		"--auth", "trust",
		"--encoding", "UTF8",
		"--no-locale",
		"--no-sync")
	initdb.Dir = dir
	initdb.Stdout, initdb.Stderr = logFile, logFile
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := initdb.Run(); err != nil {
		return fail(fmt.Errorf("initdb: %w", err))
	}

	// 2. The server: no TCP, the socket in dir, and unless opts.Durable
	// settings that trade durability for speed. Pdeathsig stops it if the
	// program dies before it can call Stop.
	args := []string{
		"-D", filepath.Join(dir, "data"),
		"-k", dir,
		"-p", strconv.Itoa(Port),
		"-c", "listen_addresses=",
		"-c", "max_connections=100",
	}
	if !opts.Durable {
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off")
	}
	postgres := exec.Command(filepath.Join(bin, "postgres"), args...)
	postgres.Dir = dir
	postgres.Stdout, postgres.Stderr = logFile, logFile
	postgres.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := postgres.Start(); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	s.postgres, s.exited = postgres, make(chan struct{})
	go func() { _ = postgres.Wait(); close(s.exited) }()

	// 3. Wait until it accepts connections.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return s, nil
		}
		select {
		case <-s.exited:
			return fail(fmt.Errorf("postgres exited during startup: %v", postgres.ProcessState))
		case <-ctx.Done():
			return fail(fmt.Errorf("postgres does not accept connections after %v: %w", startTimeout, err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops the server (a fast shutdown: open transactions are rolled
// back and connections closed; killed if it has not stopped within 10 s)
// and removes its directory. It may be called more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.postgres != nil {
			_ = s.postgres.Process.Signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("postgres did not stop within 10s of SIGINT; killed it"))
				_ = s.postgres.Process.Kill()
				<-s.exited
			}
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.Dir, err))
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// logPath is the server log's file.
func (s *Server) logPath() string { return filepath.Join(s.Dir, "postgres.log") }

// Log returns what initdb and the server have logged so far, or "" once
// the directory is gone.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// runAs returns the credentials to run PostgreSQL with: the postgres
// user's as root, nil (the current user) otherwise.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as (install the Debian package postgresql): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// DSN returns a postgres:// URL that connects to database on the server
// as the superuser, through its Unix socket.
func (s *Server) DSN(database string) string {
	q := url.Values{}
	q.Set("host", s.Dir)
	q.Set("port", strconv.Itoa(Port))
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + database, RawQuery: q.Encode()}
	return u.String()
}

// CreateDatabase creates the database name on the server unless it exists
// already, and returns its DSN. The name is used as it is (quoted), so it
// may hold any character; PostgreSQL truncates names to 63 bytes.
func (s *Server) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	dsn, err := s.Database(name)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Database is CreateDatabase for a program that is not a test: it returns
// the error instead of failing a test.
func (s *Server) Database(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to the private PostgreSQL server: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // duplicate_database
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return s.DSN(name), nil
}

// Exec runs SQL statements as the superuser in database, for tests that
// need to reach behind the code under test (to end its connections, say).
func (s *Server) Exec(tb testing.TB, database, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(database))
	if err != nil {
		tb.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
}
