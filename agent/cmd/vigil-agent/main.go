// Command vigil-agent is Vigil's host sensor: it loads eBPF programs that
// watch every process on this host, decides which executions are
// suspicious, and sends incidents to the Vigil server.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-sensor/vigil/agent/daemon"
	"github.com/vigil-sensor/vigil/agent/sensor/process"
)

const usage = `vigil-agent watches the processes of this host with eBPF and reports
suspicious ones to a Vigil server as incidents.

Usage:
  vigil-agent [flags]

It must run as root on a kernel with BTF (/sys/kernel/btf/vmlinux). It
attaches to the sched_process_fork/exec/exit tracepoints, builds a process
tree (seeded from /proc), evaluates its built-in rules on every exec and
sends each incident to the server, resending until the server acknowledges
it. It logs to stderr. Stop it with Ctrl-C or SIGTERM: it detaches every
program before it exits.

Example:
  sudo vigil-agent --server 127.0.0.1:7470

Flags:
`

func main() {
	fs := flag.NewFlagSet("vigil-agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	server := fs.String("server", envOr("VIGIL_SERVER", "127.0.0.1:7470"), "gRPC `address` of the Vigil server (env VIGIL_SERVER)")
	ringSize := fs.Uint("ring-size", process.DefaultRingSize, "process ring buffer size in `bytes` (a power of two, at least one page)")
	stateDir := fs.String("state-dir", "/var/lib/vigil-agent", "`directory` for the agent's state")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vigil-agent: unexpected argument %q (see vigil-agent --help)\n", fs.Arg(0))
		os.Exit(2)
	}
	if *version {
		fmt.Println("vigil-agent", daemon.Version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "vigil-agent: --log-level %q: want debug, info, warn or error\n", *logLevel)
		os.Exit(2)
	}
	if *ringSize > 1<<30 {
		fmt.Fprintf(os.Stderr, "vigil-agent: --ring-size %d: at most 1 GiB\n", *ringSize)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := daemon.Run(ctx, daemon.Config{
		ServerAddr: *server,
		RingSize:   uint32(*ringSize),
		StateDir:   *stateDir,
		Logger:     log,
	})
	if err != nil {
		log.Error("vigil-agent failed", "error", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
