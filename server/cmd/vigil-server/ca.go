package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/vigil-sensor/vigil/server/pki"
)

const caUsage = `vigil-server ca makes a development certificate authority for agent mTLS.

Usage:
  vigil-server ca init DIR [--host NAME,...]
      writes DIR/ca.pem, DIR/ca-key.pem (keep it secret), and
      DIR/server.pem, DIR/server-key.pem for the host names and IP
      addresses given (default localhost,127.0.0.1,::1)
  vigil-server ca issue DIR NAME
      writes the agent certificate DIR/NAME.pem and DIR/NAME-key.pem,
      signed by the CA in DIR

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
		return 0
	case "issue":
		if len(args) != 3 {
			return usageError(stderr, "ca issue: want DIR NAME")
		}
		cert, key, err := pki.IssueAgent(args[1], args[2])
		if err != nil {
			fmt.Fprintf(stderr, "vigil-server: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "agent certificate %s, key %s\n", cert, key)
		return 0
	default:
		return usageError(stderr, fmt.Sprintf("unknown ca command %q (want init or issue)", args[0]))
	}
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
