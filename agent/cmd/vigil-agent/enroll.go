package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/enroll"
)

const enrollUsage = `vigil-agent enroll --server ADDR --token TOKEN (--ca-fingerprint SHA256 | --tls-ca FILE) [flags]

Gets this agent its client certificate from a vigil-server that runs with
--enroll-ca. The agent makes a private key here (it never leaves the
host), sends a certificate signing request with the enrollment token
('vigil-server ca enroll-token' on the server) and writes
STATE_DIR/tls/agent-key.pem (mode 0600), agent.pem and ca.pem. At its
next start the agent connects with them whenever its config sets no tls:
keys.

Before it sends the token the agent checks the server: by the CA file
that signed the server's certificate (--tls-ca), or by that CA's SHA-256
fingerprint (--ca-fingerprint; 'vigil-server ca fingerprint DIR' prints
it), which the server presents in its handshake.

Examples:
  sudo vigil-agent enroll --server vigil.example:7470 --token enroll-... \
    --ca-fingerprint sha256:4f1c...
  sudo VIGIL_ENROLL_TOKEN=enroll-... vigil-agent enroll --server vigil.example:7470 --tls-ca ca.pem

Flags:
`

// runEnroll implements "vigil-agent enroll".
func runEnroll(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-agent enroll", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), enrollUsage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", config.DefaultPath, "configuration `file`, for server and state_dir (optional unless given)")
	server := fs.String("server", "", "gRPC `address` of the Vigil server (default: the config's, or env VIGIL_SERVER)")
	token := fs.String("token", "", "the enrollment `token` (or env VIGIL_ENROLL_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the enrollment token from `file`")
	caFile := fs.String("tls-ca", "", "trust the server's certificate signed by the CA in `file` (PEM)")
	fingerprint := fs.String("ca-fingerprint", "", "trust the server whose chain holds the CA with this SHA-256 `fingerprint`")
	name := fs.String("name", "", "the certificate `name` to ask for (default: the host name)")
	stateDir := fs.String("state-dir", "", "the agent's state `directory` (default: the config's)")
	force := fs.Bool("force", false, "enroll again, replacing the key and certificate there")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vigil-agent enroll: %v (see vigil-agent enroll --help)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vigil-agent enroll: unexpected argument %q (see vigil-agent enroll --help)\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := config.Load(*configPath, set["config"])
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent enroll: %v\n", err)
		return 2
	}
	opt := enroll.Options{Server: cfg.Server, StateDir: cfg.StateDir, Token: *token, CAFile: *caFile,
		CAFingerprint: *fingerprint, Name: *name, Force: *force}
	if v := os.Getenv("VIGIL_SERVER"); v != "" {
		opt.Server = v
	}
	if *server != "" {
		opt.Server = *server
	}
	if *stateDir != "" {
		opt.StateDir = *stateDir
	}
	if opt.Token == "" {
		opt.Token = os.Getenv("VIGIL_ENROLL_TOKEN")
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent enroll: %v\n", err)
			return 2
		}
		opt.Token = strings.TrimSpace(string(b))
	}
	if opt.Token == "" {
		fmt.Fprintln(stderr, "vigil-agent enroll: no token: give --token, --token-file or VIGIL_ENROLL_TOKEN")
		return 2
	}
	if (opt.CAFile == "") == (opt.CAFingerprint == "") {
		fmt.Fprintln(stderr, "vigil-agent enroll: give one of --ca-fingerprint and --tls-ca, to check the server before the token is sent")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := enroll.Enroll(ctx, opt)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "enrolled as %s with %s; certificate valid until %s\n  key  %s\n  cert %s\n  ca   %s\n",
		res.Name, opt.Server, res.NotAfter.Format(time.RFC3339), res.TLS.Key, res.TLS.Cert, res.TLS.CA)
	return 0
}
