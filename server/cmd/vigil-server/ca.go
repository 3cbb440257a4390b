package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/pki"
)

const caUsage = `vigil-server ca makes a development certificate authority for agent mTLS.

Usage:
  vigil-server ca init DIR [--host NAME,...]
      writes DIR/ca.pem, DIR/ca-key.pem (keep it secret), and
      DIR/server.pem, DIR/server-key.pem for the host names and IP
      addresses given (default localhost,127.0.0.1,::1)
  vigil-server ca issue DIR NAME [--force]
      writes the agent certificate DIR/NAME.pem and DIR/NAME-key.pem,
      signed by the CA in DIR; refuses to replace them without --force
  vigil-server ca enroll-token DIR [--ttl 24h] [--uses 1] [--name NAME] [--tokens FILE]
      makes an enrollment token, prints it (only this once) on stdout and
      adds its SHA-256 to DIR/enroll-tokens.yaml (or FILE), which
      vigil-server --enroll-ca DIR reads at each enrollment: an agent
      runs 'vigil-agent enroll --token TOKEN' to get its certificate. It
      is good for --uses enrollments within --ttl; with --name every
      certificate it gets is named NAME, else the agent's host name
  vigil-server ca fingerprint DIR
      prints the SHA-256 fingerprint of DIR/ca.pem, for
      'vigil-agent enroll --ca-fingerprint'

Keys are ECDSA P-256; the CA is valid for 10 years, certificates for 2.
`

// caCommand runs 'vigil-server ca ...' and returns the exit status.
func caCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return 0
	case "init":
		fs := flag.NewFlagSet("vigil-server ca init", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		hosts := fs.String("host", "localhost,127.0.0.1,::1", "")
		rest, err := parseInterleaved(fs, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, caUsage)
			return 0
		}
		if err != nil {
			return usageError(stderr, "ca init: "+err.Error())
		}
		if len(rest) != 1 {
			return usageError(stderr, "ca init: want one directory")
		}
		var hs []string
		for h := range strings.SplitSeq(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		if err := pki.Init(rest[0], hs); err != nil {
			fmt.Fprintf(stderr, "vigil-server: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "CA %s, server certificate %s for %s\n",
			filepath.Join(rest[0], pki.CAFile), filepath.Join(rest[0], pki.ServerFile), strings.Join(hs, ", "))
		if ca, err := pki.LoadCA(rest[0]); err == nil {
			fmt.Fprintf(stdout, "CA fingerprint %s\n", pki.Fingerprint(ca.Cert))
		}
		return 0
	case "enroll-token":
		return enrollTokenCommand(args[1:], stdout, stderr)
	case "fingerprint":
		fs := flag.NewFlagSet("vigil-server ca fingerprint", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		rest, err := parseInterleaved(fs, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, caUsage)
			return 0
		}
		if err != nil {
			return usageError(stderr, "ca fingerprint: "+err.Error())
		}
		if len(rest) != 1 {
			return usageError(stderr, "ca fingerprint: want DIR")
		}
		ca, err := pki.LoadCA(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "vigil-server: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, pki.Fingerprint(ca.Cert))
		return 0
	case "issue":
		fs := flag.NewFlagSet("vigil-server ca issue", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		force := fs.Bool("force", false, "")
		rest, err := parseInterleaved(fs, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, caUsage)
			return 0
		}
		if err != nil {
			return usageError(stderr, "ca issue: "+err.Error())
		}
		if len(rest) != 2 {
			return usageError(stderr, "ca issue: want DIR NAME")
		}
		dir, name := rest[0], rest[1]
		// Like ca init, do not replace a key unless told to: an agent
		// may be using it.
		if !*force && name == filepath.Base(name) {
			for _, f := range []string{name + ".pem", name + "-key.pem"} {
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					fmt.Fprintf(stderr, "vigil-server: ca issue: %s already exists (pass --force to replace it)\n", filepath.Join(dir, f))
					return 1
				}
			}
		}
		cert, key, err := pki.IssueAgent(dir, name)
		if err != nil {
			fmt.Fprintf(stderr, "vigil-server: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "agent certificate %s, key %s\n", cert, key)
		return 0
	default:
		return usageError(stderr, fmt.Sprintf("unknown ca command %q (want init, issue, enroll-token or fingerprint)", args[0]))
	}
}

// enrollTokenCommand runs 'vigil-server ca enroll-token': the token goes
// alone on stdout, so that scripts can take it; how to use it goes to
// stderr.
func enrollTokenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-server ca enroll-token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ttl := fs.Duration("ttl", enroll.DefaultTTL, "")
	uses := fs.Int("uses", enroll.DefaultUses, "")
	name := fs.String("name", "", "")
	file := fs.String("tokens", "", "")
	rest, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, caUsage)
		return 0
	}
	if err != nil {
		return usageError(stderr, "ca enroll-token: "+err.Error())
	}
	if len(rest) != 1 {
		return usageError(stderr, "ca enroll-token: want one CA directory")
	}
	if *ttl <= 0 || *uses <= 0 {
		return usageError(stderr, "ca enroll-token: --ttl and --uses must be positive")
	}
	ca, err := pki.LoadCA(rest[0])
	if err != nil {
		fmt.Fprintf(stderr, "vigil-server: ca enroll-token: %v\n", err)
		return 1
	}
	path := *file
	if path == "" {
		path = filepath.Join(rest[0], enroll.TokensFile)
	}
	token, entry, err := enroll.Tokens{Path: path}.Create(enroll.Options{Name: *name, TTL: *ttl, Uses: *uses}, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "vigil-server: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, token)
	fmt.Fprintf(stderr, "enrollment token for %d enrollment(s) until %s, added to %s; on the agent's host:\n"+
		"  vigil-agent enroll --server SERVER:7470 --ca-fingerprint %s --token TOKEN\n",
		entry.Uses, entry.Expires.Format(time.RFC3339), path, pki.Fingerprint(ca.Cert))
	return 0
}

// parseInterleaved parses flags that may come before or after the
// positional arguments and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}
