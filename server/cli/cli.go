// Package cli is vigilctl: the command line client that lists, follows and
// shows the incidents a Vigil server has stored. Run is the whole program,
// so that tests can run it in-process; cmd/vigilctl only calls it.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/vigil-sensor/vigil/internal/version"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/pki"
)

// Exit codes of Run.
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitError means the command failed: the server could not be reached,
	// the incident does not exist, output could not be written.
	ExitError = 1
	// ExitUsage means the command line was wrong: unknown command or flag,
	// missing or extra argument, bad flag value.
	ExitUsage = 2
)

// ServerEnv is the environment variable that sets the default of --server.
const ServerEnv = "VIGIL_SERVER"

// TokenEnv is the environment variable that sets the default of --token.
const TokenEnv = "VIGIL_TOKEN"

// CAEnv is the environment variable that sets the default of --ca.
const CAEnv = "VIGIL_CA"

// usageError is a mistake on the command line; it exits with ExitUsage.
type usageError struct {
	cmd string // the command whose help to point at, e.g. "vigilctl incidents list"
	msg string
}

func (e *usageError) Error() string { return e.msg }

// app is one run of vigilctl.
type app struct {
	stdout, stderr io.Writer
	server         string
	timeout        time.Duration
	token          string // bearer token sent with every call; "" for none
	caFile         string // CA of the server's certificate; "" for plaintext
	getenv         func(string) string
}

const topUsage = `vigilctl reads the incidents a Vigil server has stored.
It also lists the server's agents, asks them to respond and sets the
rules they run.

Usage:
  vigilctl [--server ADDR] [--timeout DURATION] [--token TOKEN] [--ca FILE] COMMAND ...

Commands:
  incidents list   list stored incidents, newest first
  incidents tail   print incidents as they arrive, until Ctrl-C
  incidents show   show one incident with its process tree and triage
  incidents update set an incident's status or label, or add a note
  incidents export write incidents as OCSF (or Vigil) JSON lines
  agents           list the agents, connected or recently seen
  respond          ask a host's agent to carry out a response
  actions          list the responses requested through the server
  rules            set or show the fleet's rule set (push, clear, show)

Flags:
  --server ADDR        address of vigil-server, host:port
                       (default $VIGIL_SERVER, else 127.0.0.1:7470)
  --timeout DURATION   how long to wait for an answer to one request
                       (default 10s; tail waits forever for new incidents)
  --token TOKEN        bearer token for a server started with --tokens
                       (default $VIGIL_TOKEN)
  --ca FILE            connect with TLS, trusting the server certificates
                       this CA (PEM) signs, e.g. the ca.pem of
                       'vigil-server ca init' (default $VIGIL_CA)
  --version            print the version and exit
  -h, --help           show this help

Examples:
  vigilctl incidents list --min-severity high
  VIGIL_SERVER=10.0.0.5:7470 vigilctl incidents tail --json
  vigilctl incidents show 01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f
  vigilctl agents

Run 'vigilctl incidents COMMAND --help' and 'vigilctl COMMAND --help' for
the flags of each command. The flags above work after the command too.
Exit status: 0 on success, 1 when the command failed (for example the
server could not be reached), 2 when the command line was wrong.
`

const incidentsUsage = `vigilctl incidents reads stored incidents.

Usage:
  vigilctl incidents list [--limit N] [--host ID] [--rule ID] [--min-severity LEVEL] [--json]
  vigilctl incidents tail [--after CURSOR] [--host ID] [--rule ID] [--min-severity LEVEL] [--json]
  vigilctl incidents show ID [--json]
  vigilctl incidents update ID [--status STATUS] [--label LABEL] [--note TEXT]
  vigilctl incidents export [--format ocsf|json] [--after-cursor N] [--follow]

Run 'vigilctl incidents COMMAND --help' for details.

Examples:
  vigilctl incidents list --min-severity high
  vigilctl incidents tail --json
  vigilctl incidents show 01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f
`

const listUsage = `vigilctl incidents list prints stored incidents, newest first.

Usage:
  vigilctl incidents list [--limit N] [--host ID] [--rule ID] [--min-severity LEVEL] [--json]

Flags:
  --limit N              print at most N incidents (default 50)
  --host HOST            only incidents of this host (host id or hostname)
  --rule ID              only incidents raised by this rule
  --min-severity LEVEL   only incidents at least this severe:
                         info, low, medium, high or critical
  --json                 print one JSON object per incident and line
                         (protobuf JSON field names) instead of a table

The CURSOR column is the incident's position in the server's store; pass
it to 'vigilctl incidents tail --after' to follow from there.

Examples:
  vigilctl incidents list
  vigilctl incidents list --limit 500 --host 0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f --json
`

const tailUsage = `vigilctl incidents tail prints every stored incident after a cursor,
oldest first, then each new one as the server stores it, until Ctrl-C.
If the connection drops it reconnects and resumes after the last incident
printed, so nothing is missed or printed twice.

Usage:
  vigilctl incidents tail [--after CURSOR] [--host ID] [--rule ID] [--min-severity LEVEL] [--json]

Flags:
  --after CURSOR         start after this cursor (default 0: every stored
                         incident first, then new ones)
  --host HOST            only incidents of this host (host id or hostname)
  --rule ID              only incidents raised by this rule
  --min-severity LEVEL   only incidents at least this severe:
                         info, low, medium, high or critical
  --json                 print one JSON object per incident and line

Examples:
  vigilctl incidents tail
  vigilctl incidents tail --after 1200 --min-severity high --json | jq .title
`

const showUsage = `vigilctl incidents show prints one incident: its details and its process
tree, from the oldest ancestor (normally pid 1) down to the process that
triggered the rule, one process a line with pid, user, executable and argv.

Usage:
  vigilctl incidents show ID [--json]

Flags:
  --json          print the incident as one JSON object instead

Example:
  vigilctl incidents show 01963c1e-7d2a-7b3c-9f1e-2a3b4c5d6e7f
`

// Run runs vigilctl with args (without the program name) and returns its
// exit status. getenv reads the environment (os.Getenv in the real
// program). Run returns when ctx ends, so cancel it on Ctrl-C.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	err := a.run(ctx, args, getenv)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "vigilctl: %s\nRun '%s --help' for usage.\n", ue.msg, ue.cmd)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "vigilctl: %v\n", err)
		return ExitError
	}
}

// run parses the top-level flags and dispatches the command.
func (a *app) run(ctx context.Context, args []string, getenv func(string) string) error {
	def := getenv(ServerEnv)
	if def == "" {
		def = grpcserver.DefaultAddr
	}
	fs := newFlagSet()
	fs.StringVar(&a.server, "server", def, "")
	fs.DurationVar(&a.timeout, "timeout", 10*time.Second, "")
	fs.StringVar(&a.token, "token", getenv(TokenEnv), "")
	fs.StringVar(&a.caFile, "ca", getenv(CAEnv), "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		return a.flagError("vigilctl", topUsage, err)
	}
	if *showVersion {
		_, err := fmt.Fprintln(a.stdout, "vigilctl", version.Version)
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(a.stderr, topUsage)
		return &usageError{"vigilctl", "no command given"}
	}
	if a.timeout <= 0 {
		return &usageError{"vigilctl", fmt.Sprintf("--timeout %v is not positive", a.timeout)}
	}
	switch rest[0] {
	case "incidents", "incident":
		return a.incidents(ctx, rest[1:])
	case "agents":
		return a.agents(ctx, rest[1:])
	case "respond":
		return a.respond(ctx, rest[1:])
	case "actions":
		return a.actions(ctx, rest[1:])
	case "rules":
		return a.rules(ctx, rest[1:])
	case "help":
		fmt.Fprint(a.stdout, topUsage)
		return nil
	default:
		return &usageError{"vigilctl", fmt.Sprintf("unknown command %q", rest[0])}
	}
}

// incidents dispatches the incidents subcommands.
func (a *app) incidents(ctx context.Context, args []string) error {
	const cmd = "vigilctl incidents"
	if len(args) == 0 {
		fmt.Fprint(a.stderr, incidentsUsage)
		return &usageError{cmd, "no incidents command given (list, tail, show, update or export)"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(a.stdout, incidentsUsage)
		return flag.ErrHelp
	case "list", "ls":
		return a.list(ctx, args[1:])
	case "tail", "follow":
		return a.tail(ctx, args[1:])
	case "show", "get":
		return a.show(ctx, args[1:])
	case "export":
		return a.export(ctx, args[1:])
	case "update":
		return a.update(ctx, args[1:])
	default:
		return &usageError{cmd, fmt.Sprintf("unknown incidents command %q (want list, tail, show, update or export)", args[0])}
	}
}

// newFlagSet returns a flag set that reports errors to its caller only.
func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("vigilctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// newFlagSet returns a command's flag set with the global flags in it, so
// that they work after the command too; their defaults are what the
// flags before the command set.
func (a *app) newFlagSet() *flag.FlagSet {
	fs := newFlagSet()
	fs.StringVar(&a.server, "server", a.server, "")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "")
	fs.StringVar(&a.token, "token", a.token, "")
	fs.StringVar(&a.caFile, "ca", a.caFile, "")
	return fs
}

// globalUsage lists the global flags under each command's help.
const globalUsage = `
Global flags (before or after the command):
  --server ADDR        address of vigil-server, host:port
                       (default $VIGIL_SERVER, else 127.0.0.1:7470)
  --timeout DURATION   how long to wait for an answer to one request (default 10s)
  --token TOKEN        bearer token for a server started with --tokens
                       (default $VIGIL_TOKEN)
  --ca FILE            connect with TLS, trusting the server certificates
                       this CA (PEM) signs (default $VIGIL_CA)
`

// flagError turns an error of flag parsing into help output or a usage
// error.
func (a *app) flagError(cmd, usage string, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(a.stdout, usage)
		if cmd != "vigilctl" {
			fmt.Fprint(a.stdout, globalUsage)
		}
		return flag.ErrHelp
	}
	return &usageError{cmd, err.Error()}
}

// parse parses flags that may come before, between or after positional
// arguments, and returns the positional ones. Everything after "--" is
// positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// filterFlags adds --host, --rule and --min-severity to fs.
type filterFlags struct {
	host, rule, minSeverity string
}

func (f *filterFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.host, "host", "", "")
	fs.StringVar(&f.rule, "rule", "", "")
	fs.StringVar(&f.minSeverity, "min-severity", "", "")
}

// filter builds the IncidentFilter the flags describe.
func (f *filterFlags) filter() (*vigilv1.IncidentFilter, error) {
	out := &vigilv1.IncidentFilter{HostId: f.host, RuleId: f.rule}
	if f.minSeverity != "" {
		sev, err := parseSeverity(f.minSeverity)
		if err != nil {
			return nil, fmt.Errorf("--min-severity: %w", err)
		}
		out.MinSeverity = sev
	}
	return out, nil
}

// dial returns a client connection to the server. grpc connects lazily, so
// an unreachable server shows up as the first call's error (see rpcError).
func (a *app) dial() (*grpc.ClientConn, error) {
	if a.timeout <= 0 {
		return nil, &usageError{"vigilctl", fmt.Sprintf("--timeout %v is not positive", a.timeout)}
	}
	creds := insecure.NewCredentials()
	if a.caFile != "" {
		tc, err := pki.ClientConfig(a.caFile, "", "")
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if a.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(a.token)))
	}
	conn, err := grpc.NewClient(a.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: %w", a.server, err)
	}
	return conn, nil
}

// bearerToken sends a token in the authorization header of every call.
// It is sent over plaintext connections too: whether that is acceptable
// is the server operator's choice (vigil-server warns about it).
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// rpcError explains a failed call in terms of what the user can act on.
func (a *app) rpcError(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	if strings.HasPrefix(st.Message(), "agent of host") {
		// The server is there; the host's agent is not, or did not answer.
		return errors.New(st.Message())
	}
	switch st.Code() {
	case codes.Unavailable:
		if a.caFile == "" && speaksTLS(a.server, min(a.timeout, 5*time.Second)) {
			return fmt.Errorf("the server at %s speaks TLS: pass --ca FILE (or set $%s)", a.server, CAEnv)
		}
		return fmt.Errorf("cannot reach vigil-server at %s: %s", a.server, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("vigil-server at %s did not answer within %v", a.server, a.timeout)
	case codes.NotFound, codes.InvalidArgument:
		return errors.New(st.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("%s: not authenticated (give --token or set $%s): %s", what, TokenEnv, st.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("%s: permission denied: %s", what, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("%s: %s does not offer this (is it a vigil-server?): %s", what, a.server, st.Message())
	default:
		return fmt.Errorf("%s: %s: %s", what, strings.ToLower(st.Code().String()), st.Message())
	}
}

// speaksTLS reports whether the server at addr answers a TLS handshake, so
// that a plaintext call that failed (typically "error reading server
// preface: EOF") can be explained. The certificate is not checked: this
// only tells the user to pass --ca, nothing is sent over the connection.
func speaksTLS(addr string, timeout time.Duration) bool {
	target := strings.TrimPrefix(addr, "dns:///")
	if _, _, err := net.SplitHostPort(target); err != nil {
		return false
	}
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", target, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe, see above
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
